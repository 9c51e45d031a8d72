"""torchrun support: process group from the environment, and the few collectives the loop needs.

Launch with `torchrun --nproc_per_node N -m rotnet train ...`: nccl on GPUs, gloo on CPU. One process per device;
--batch-size stays the global batch (split across ranks), so the reference's lr 1e-3 at batch 128 means the same thing
whatever the number of ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rotnet.errors import RotnetError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_size() -> int:
    """How many processes torchrun started for this command (its WORLD_SIZE; 1 without torchrun)."""
    text = os.environ.get("WORLD_SIZE", "1")
    if not text.strip().isdigit():
        raise RotnetError(f"WORLD_SIZE must be a whole number (torchrun sets it); got {text!r}")
    return int(text)


def init_from_env(device_name: str) -> World:
    """Join the process group torchrun describes in WORLD_SIZE/RANK/LOCAL_RANK; a single process if unset."""
    size = launched_size()
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    gpu = device_name != "cpu" and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(world.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    return world


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """A reduced copy of t across ranks (t itself when not distributed)."""
    if not dist.is_initialized():
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return out


def main_value(value: int) -> int:
    """Rank 0's value, on every rank (a verdict only rank 0's record copy can give: the ranks' BatchNorm buffers
    differ after a step, DDP broadcasts rank 0's at the next)."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.int64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return int(t.item())


def is_main_rank() -> bool:
    """Whether this process is rank 0 of torchrun's group, or the only process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's part of a global batch: a strided slice, so the ranks' parts are disjoint and cover it."""
    return batch[world.rank :: world.size] if world.size > 1 else batch


def ranks_agree(model: torch.nn.Module) -> bool:
    """Whether every rank holds the same parameters (DDP keeps them so; a divergence is a bug worth stopping on)."""
    if not dist.is_initialized():
        return True
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    mine = torch.stack([flat.sum(), (flat * torch.arange(len(flat), device=flat.device) % 9973).sum()])
    return bool(torch.equal(all_reduce(mine, "max"), -all_reduce(-mine, "max")))
