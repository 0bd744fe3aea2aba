"""Several processes training one model (torchrun): who am I, and what the others have.

``torchrun --nproc_per_node=N -m maskfocal train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :meth:`Distributed.from_env` joins the group (``nccl`` on CUDA, ``gloo`` on
CPU). Without those variables it is the one-process world and every method is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from maskfocal.device import select_device
from maskfocal.errors import MaskfocalError


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> tuple[Distributed, torch.device]:
        """Join the process group torchrun describes; returns it and this process's device."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        device = select_device(device_name)
        if world <= 1:
            return cls(), device
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        return cls(rank, world, local_rank), device

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        tensor = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(tensor)  # gloo and nccl: on nccl the group copies from the CPU
        return tensor.tolist()

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (picklable values)."""
        if self.world == 1:
            return [value]
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class GlobalBatches(torch.utils.data.Sampler[list[int]]):
    """This process's share of each global batch.

    The order is the one-process order (``torch.randperm`` of the epoch's generator, cut into
    batches of ``batch_size``, the last partial batch dropped); each global batch is split
    into ``world`` equal slices and process ``rank`` takes its slice. The union over processes
    is exactly the one-process batch, so N processes see what one would.
    """

    def __init__(self, length: int, batch_size: int, generator: torch.Generator,
                 rank: int = 0, world: int = 1, *, epoch: int | None = None) -> None:
        if batch_size % world:
            raise MaskfocalError(f"data.batch_size={batch_size} (the global batch) must be "
                                 f"divisible by the {world} processes")
        self.length, self.batch_size = length, batch_size
        self.generator, self.rank, self.world = generator, rank, world
        self.epoch = epoch

    def start_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """The next epoch's order; items become ``(epoch, index)``, so that a dataset in
        persistent worker processes still knows the epoch of each item."""
        self.epoch, self.generator = epoch, generator

    def __len__(self) -> int:
        return self.length // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.length, generator=self.generator).tolist()
        share = self.batch_size // self.world
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            mine = batch[self.rank * share:(self.rank + 1) * share]
            yield mine if self.epoch is None else [(self.epoch, index) for index in mine]
