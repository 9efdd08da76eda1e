"""The collective operations a bake's code uses, the same whether it runs as one process or as a rank of a
launched group: outside a group each is the one-process answer (rank 0 of 1, a sum over one rank, no wait)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def rank() -> tuple[int, int]:
    """(this process's rank, the number of ranks); (0, 1) outside a launched group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank()[0] == 0


def barrier() -> None:
    import torch.distributed as dist

    if rank()[1] > 1:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it writes a cache); the other ranks run it after, reading that cache."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce_sum(tensor: Any) -> Any:
    """The tensor summed over ranks (float64 sums and counts of the profile); itself outside a group. NCCL
    reduces on the GPU: the tensor goes to this rank's device and comes back to the CPU."""
    import torch
    import torch.distributed as dist

    if rank()[1] == 1:
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else tensor.device
    moved = tensor.to(device)
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    return moved.to(tensor.device)


def all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (per-example rows that cannot be summed); [obj] outside a group."""
    import torch.distributed as dist

    world = rank()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def parallel_kind(trainer: Any) -> str:
    """How the Trainer's accelerator actually spread the model ("NO", "MULTI_CPU", "MULTI_GPU", "FSDP",
    "DEEPSPEED"), as recorded in done.json: what ran, not what was asked for."""
    return str(getattr(trainer.accelerator.distributed_type, "value", trainer.accelerator.distributed_type))
