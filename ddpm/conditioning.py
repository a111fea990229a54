"""The class label's way into both networks: a learned embedding added to the time embedding, with one extra row for
the null label, "no label" (classifier-free guidance, Ho & Salimans 2022: label dropout trains it, and the guide of
guidance "cfg" is the network given it)."""

import torch
import torch.nn as nn


class ClassEmbedding(nn.Embedding):
    """Rows 0..K-1 embed the K classes, row K the null label; N(0, 1) init, as nn.Embedding's."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__(num_classes + 1, dim)
        self.num_classes = num_classes


def add_class_embedding(temb: torch.Tensor, class_embedding: ClassEmbedding | None, labels: torch.Tensor | None,
                        network: str) -> torch.Tensor:
    """The time embedding `temb` (B, D) plus the embedding of each sample's label (None: the null label) for a
    class-conditional network; an unconditional `network` (no class_embedding) refuses labels."""
    if class_embedding is None:
        if labels is not None:
            raise ValueError(f"labels: this {network} is unconditional (num_classes 0); build it with num_classes > 0 "
                             "to pass labels, or pass labels=None")
        return temb
    if labels is None:
        labels = torch.full((temb.shape[0],), class_embedding.num_classes, device=temb.device)
    return temb + class_embedding(labels)
