"""Checks of single config values, one convention for all: a ValueError that names the field, what is allowed and
what was given. Also the allowed values of every choice, each list written once, and the arguments each network
accepts, checked without torch so that the workflow refuses a network it cannot build before any job starts.
"""

import numbers
import operator

ARCHITECTURES = ("course", "ddpm")  # ddpm.unet.UNet, ddpm.ddpm_unet.DDPMUNet
SCHEDULES = ("linear", "cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
AUTO_SWITCH = ("auto", "on", "off")
DATASETS = ("digits", "cifar10", "folder")
SAMPLERS = ("ancestral", "ddim", "dpm_solver", "dpm_solver_sde")
PREDICTIONS = ("eps", "v", "x0")  # what the network predicts
LOSS_WEIGHTINGS = ("uniform", "min_snr")
EXTRACTORS = ("classifier", "inception")
# what the evaluate job scores per draw (ddpm.metrics.score_draw), in the metric rows' order
METRICS = ("fid", "fid_balanced", "class_mix_error", "precision", "recall", "memorisation")

COURSE_GROUPS = 8  # GroupNorm groups in every block of the course UNet
COURSE_IMAGE_SIZES = tuple(2**k for k in range(3, 9))  # 8, 16, ..., 256
DDPM_GROUPS = 32  # GroupNorm groups in every block of the paper's UNet


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum] (NumPy integers too, bools not)."""
    try:
        integer = operator.index(value)
    except TypeError:
        integer = None
    if isinstance(value, bool) or integer is None or integer < minimum or (maximum is not None and integer > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")
    return integer


def check_betas(beta1, beta2) -> None:
    """The linear schedule's beta_1 and beta_T (Ho et al. 2020: 1e-4 and 0.02)."""
    real = all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in (beta1, beta2))
    if not (real and 0.0 < beta1 < beta2 < 1.0):
        raise ValueError(f"beta1 and beta2 must satisfy 0 < beta1 < beta2 < 1, got {beta1!r}, {beta2!r}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def check_course_unet(hidden_size, image_size=None) -> None:
    """The course UNet: GroupNorm(8) on every width, three poolings and a bottleneck of at most 4x4 (the image
    size is checked when it is known)."""
    if not _is_int(hidden_size) or hidden_size <= 0 or hidden_size % COURSE_GROUPS:
        raise ValueError(f"hidden_size must be a positive multiple of {COURSE_GROUPS} for architecture 'course' "
                         f"(GroupNorm uses {COURSE_GROUPS} groups), got {hidden_size!r}")
    if image_size is not None:
        check_choice("image_size", image_size, COURSE_IMAGE_SIZES)


def check_ddpm_unet(hidden_size, image_size, channel_mult, num_res_blocks, attention_resolutions, dropout) -> None:
    """The UNet of Ho et al. (2020, Appendix B): level i works at resolution image_size / 2**i with
    hidden_size * channel_mult[i] channels, each a multiple of GroupNorm's 32 groups."""
    if not _is_int(hidden_size) or hidden_size <= 0 or hidden_size % DDPM_GROUPS:
        raise ValueError(f"hidden_size must be a positive multiple of {DDPM_GROUPS} (GroupNorm uses {DDPM_GROUPS} "
                         f"groups on every width hidden_size * channel_mult[i]), got {hidden_size!r}")
    check_int("image_size", image_size, minimum=4)
    if not isinstance(channel_mult, (list, tuple)) or not channel_mult or \
            not all(_is_int(m) and m >= 1 for m in channel_mult):
        raise ValueError("channel_mult must be a non-empty list of positive integers (one width multiplier per "
                         f"resolution), got {channel_mult!r}")
    levels = len(channel_mult)
    if image_size / 2 ** (levels - 1) < 4:
        raise ValueError(f"channel_mult has {levels} levels, which would downsample image_size {image_size} "
                         f"below 4x4; image_size {image_size} allows at most {(image_size // 4).bit_length()} levels")
    if image_size % 2 ** (levels - 1):
        raise ValueError(f"image_size must be divisible by 2**(len(channel_mult) - 1) = {2 ** (levels - 1)} so "
                         f"that every downsampling halves it exactly, got {image_size!r}")
    resolutions = [image_size // 2**i for i in range(levels)]
    if not isinstance(attention_resolutions, (list, tuple)) or \
            not all(_is_int(r) and r in resolutions for r in attention_resolutions):
        raise ValueError(f"attention_resolutions must be a list of resolutions the network reaches, from "
                         f"{resolutions}, got {attention_resolutions!r}")
    check_int("num_res_blocks", num_res_blocks, minimum=1)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
