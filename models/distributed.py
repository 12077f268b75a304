"""Where training runs: the torch device and, under `torchrun`, the data-parallel process group.

`recsys train --nproc N` starts N processes through torchrun's rendezvous (`torchrun_command`);
a multi-node job runs the same `recsys train` under torchrun on every node (the Helm chart's
training Job). Each process reads torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) in `init_process_group`; the two-tower training wraps its model in
DistributedDataParallel (gloo on CPU, nccl on CUDA) and rank 0 alone trains the other stages and
writes the model store. Without torchrun's environment everything is one process, rank 0 of 1.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from data.errors import RecsysError

if TYPE_CHECKING:
    import torch

DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Rank:
    """This process's place in the training job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that evaluates, trains the other stages and stores models."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process trains the two-tower model."""
        return self.world > 1


def current_rank() -> Rank:
    """This process's rank from torchrun's environment (rank 0 of 1 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return Rank(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: DeviceName | str, rank: Rank | None = None) -> torch.device:
    """The torch device for `RECSYS_DEVICE` (auto: CUDA when there is one, else the CPU).

    Under torchrun each process of a node takes the GPU of its local rank.
    """
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise RecsysError(f"RECSYS_DEVICE={name!r} is not one of auto, cpu, cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RecsysError(
            "RECSYS_DEVICE=cuda but torch sees no CUDA device: install a CUDA build of torch "
            "(the project pins the CPU build) or set RECSYS_DEVICE=auto or cpu"
        )
    local = (rank or current_rank()).local_rank
    return torch.device("cuda", local % torch.cuda.device_count())


def init_process_group(device: torch.device, rank: Rank) -> None:
    """Join torchrun's process group (a no-op for one process or when already joined)."""
    import torch.distributed as dist

    if not rank.distributed or dist.is_initialized():
        return
    if not dist.is_available():
        raise RecsysError("this torch build has no torch.distributed; train with one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank.rank, world_size=rank.world)


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """`recsys <args>` as `nproc` local processes under torchrun's standalone rendezvous."""
    recsys = shutil.which("recsys") or os.path.join(os.path.dirname(sys.executable), "recsys")
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        torchrun = shutil.which("torchrun") or "torchrun"
    return [torchrun, "--standalone", f"--nproc-per-node={nproc}", "--no-python", recsys, *args]
