"""Run under torchrun with 2 CPU processes (gloo): DDP checks that need every rank."""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ddpm.config import TrainConfig
from ddpm.data import load_dataset
from ddpm.launch import init_distributed
from ddpm.models import build_model
from ddpm.optim import make_optimizer
from ddpm.training import train


def flat_weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def same_on_every_rank(tensor):
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor)
    return all(torch.equal(gathered[0], g) for g in gathered[1:])


def main():
    init_distributed()
    rank, world = dist.get_rank(), dist.get_world_size()
    config = TrainConfig(hidden_size=8, num_timesteps=20, optimizer="sgd", lr=0.1, momentum=0.0, device="cpu")
    torch.manual_seed(0)
    model = build_model(config, 1, 8)
    single = build_model(config, 1, 8)
    single.load_state_dict(model.state_dict())
    ddp = DistributedDataParallel(model)
    optimizer = make_optimizer(config, model.parameters(), torch.tensor(config.lr))
    single_optimizer = make_optimizer(config, single.parameters(), torch.tensor(config.lr))

    generator = torch.Generator().manual_seed(1)  # the same global batch on every rank
    for step in range(5):
        x0 = torch.randn(8, 1, 8, 8, generator=generator)
        noise = torch.randn(8, 1, 8, 8, generator=generator)
        t = torch.randint(1, 21, (8,), generator=generator)
        shard = slice(rank * 8 // world, (rank + 1) * 8 // world)

        optimizer.zero_grad()
        ddp(x0[shard], t=t[shard], noise=noise[shard]).backward()
        optimizer.step()
        single_optimizer.zero_grad()
        single(x0, t=t, noise=noise).backward()
        single_optimizer.step()

        assert same_on_every_rank(flat_weights(model)), f"weights differ between ranks after step {step + 1}"
        torch.testing.assert_close(flat_weights(model), flat_weights(single), rtol=1e-5, atol=1e-7)
        single.load_state_dict(model.state_dict())  # compare the next update from the same weights
    print(f"rank {rank}: 5 steps, weights equal on all ranks, updates equal to one process on the whole batch", flush=True)

    # the real training loop: every rank ends with the same weights and EMA
    images = load_dataset(sys.argv[1])[0][:256]
    config = TrainConfig(hidden_size=8, num_timesteps=20, batch_size=32, epochs=2, checkpoint_epochs=[2], device="cpu", gpus=world)
    trained = train(config, images, sys.argv[2], sys.argv[3], log=lambda message: None)
    assert same_on_every_rank(flat_weights(trained)), "trained weights differ between ranks"
    print(f"rank {rank}: train() ended with the same weights on all ranks", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
