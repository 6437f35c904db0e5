"""Multi-process runs under torchrun: who this process is, and the few collective steps we need.

torchrun (`torchrun --nproc_per_node=N -m neds_framework.cli RECIPE`, or `neds-run RECIPE
--nproc N`, which starts it) sets RANK, WORLD_SIZE and LOCAL_RANK. Without them everything here
is a no-op for one process, so single-process code needs no branches. The process group uses
gloo on CPU and NCCL on CUDA. Only rank 0 prepares data, writes the run record, TensorBoard
logs and figures, and evaluates; the other ranks wait for it where it matters.
"""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed as dist

from neds_framework.errors import NedsError


@attrs.frozen
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in the job, from torchrun's environment (one process without it)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def setup() -> World:
    """Join the process group (once) when started by torchrun; returns this process's place."""
    w = world()
    if w.distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(w.local_rank)
        dist.init_process_group(backend)
    return w


def teardown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_sum(values: list[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum over ranks of a few numbers (one collective)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_value(value: float, device: torch.device | str = "cpu") -> float:
    """Rank 0's value on every rank (decisions such as "the best checkpoint" must agree)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device(device))
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank (RNG states for checkpoints)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _collective_device(device) -> torch.device:
    device = torch.device(device)
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def pick_device(name: str, key: str = "device") -> torch.device:
    """The device a setting (``key``) names: ``auto`` is this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", world().local_rank)
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NedsError(f"{key}: {name} requested but no CUDA device is available; use auto or cpu")
    return device
