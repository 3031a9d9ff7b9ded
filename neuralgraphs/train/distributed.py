r"""Multi-process data-parallel training: the batches of a single-process run shared out between ranks, and
a check that every rank uses the same wiring.

:func:`~neuralgraphs.train.fit` trains with :class:`torch.nn.parallel.DistributedDataParallel` when a process
group of more than one rank is initialised (``torchrun`` and :func:`torch.distributed.init_process_group`;
gloo on CPU, nccl on GPU).  To give the loss curve of a single-process run with the same global batch:

* :func:`shard_loader` draws the global batches exactly as the single-process loader does (the same sampler,
  so the same seeded permutation on every rank) and gives rank ``r`` the samples ``r, r + W, ...`` of each;
* each rank's loss is scaled to :math:`\frac{W}{n}\sum_{i \in \text{rank}} \ell_i` with :math:`n` the global
  batch size, so that DDP's average over the ranks is the single-process mean :math:`\frac1n\sum_i \ell_i`;
* the epoch's train loss and accuracy are summed over the ranks.

Every rank then holds the same weights after every step (DDP applies the same averaged gradient everywhere),
and DNW's top-k of identical weights picks the same edges (the selection is deterministic, ties by index).
:func:`check_same_wiring` verifies it every ``wiring_check_every`` steps: a checksum of each rank's active
edge set is compared across ranks, and a difference is an error naming the step instead of a silent
divergence.  Normalisation statistics (BatchNorm) stay per rank, as under plain DDP: a model with BatchNorm
matches the single-process run only up to that.
"""

from __future__ import annotations

from typing import Iterator, List

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

__all__ = ["ShardedBatchSampler", "shard_loader", "active_checksum", "check_same_wiring", "world"]


def world() -> int:
    """Ranks of the initialised default process group (1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class ShardedBatchSampler(Sampler[List[int]]):
    """This rank's part of every global batch: the global batches are ``batch_size`` consecutive indices of
    ``sampler`` (the last one shorter unless it divides), rank ``r`` of ``W`` takes positions ``r, r + W, ...``
    of each.

    Args:
        sampler: the single-process loader's sampler (the same object on every rank, seeded alike).
        batch_size: the global batch size.
        rank: this rank, in ``[0, world_size)``.
        world_size: the number of ranks.
    """

    def __init__(self, sampler: Sampler, batch_size: int, rank: int, world_size: int) -> None:
        for name, value, low in (("batch_size", batch_size, 1), ("world_size", world_size, 1), ("rank", rank, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if rank >= world_size:
            raise ValueError(f"rank: expected a rank in [0, {world_size}), got {rank}")
        if batch_size < world_size:
            raise ValueError(f"batch_size: a global batch of {batch_size} cannot feed {world_size} ranks")
        n = len(sampler)  # type: ignore[arg-type]
        if 0 < n % batch_size < world_size:
            raise ValueError(f"batch_size: the last global batch of {n % batch_size} samples ({n} samples in "
                             f"batches of {batch_size}) cannot feed {world_size} ranks; choose another size")
        self.sampler, self.batch_size, self.rank, self.world_size = sampler, batch_size, rank, world_size

    def __iter__(self) -> Iterator[List[int]]:
        batch: List[int] = []
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                yield batch[self.rank::self.world_size]
                batch = []
        if batch:
            yield batch[self.rank::self.world_size]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)  # type: ignore[arg-type]


def shard_loader(loader: DataLoader, rank: int, world_size: int) -> DataLoader:
    """A loader yielding this rank's part of each of ``loader``'s batches (see :class:`ShardedBatchSampler`).

    It shares ``loader``'s sampler and generator, so :func:`~neuralgraphs.train.fit` seeds and checkpoints the
    batch order as for ``loader`` itself.

    Raises:
        TypeError: if ``loader`` is not a ``DataLoader`` with a ``batch_size``.
    """
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        raise TypeError(f"loader: expected a torch DataLoader with a batch_size, got {type(loader).__name__}")
    if loader.drop_last:
        raise ValueError("loader: drop_last is not supported; every sample of the epoch is shared out")
    batches = ShardedBatchSampler(loader.sampler, loader.batch_size, rank, world_size)
    return DataLoader(loader.dataset, batch_sampler=batches, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, generator=loader.generator)


def active_checksum(model: nn.Module) -> Tensor:
    """``[2]`` int64: a hash sum of the active candidate indices of every wired module (weighted by the
    module's position, so moving an edge between modules changes it) and their count."""
    from neuralgraphs.analysis.history import wired_modules

    total = torch.zeros(2, dtype=torch.int64)
    with torch.no_grad():
        for position, (_, module) in enumerate(wired_modules(model)):
            index = module.active().index.to("cpu", torch.int64)
            # a multiplicative hash modulo a prime below 2**31: products stay inside int64
            hashed = ((index + 1) * 2654435761 + position * 40503) % 2147483647
            total[0] += hashed.sum()
            total[1] += index.numel()
    return total


def check_same_wiring(model: nn.Module, step: int) -> None:
    """Raise :class:`RuntimeError` naming ``step`` unless every rank has the same active edges (a collective:
    every rank must call it at the same step)."""
    if world() == 1:
        return
    local = active_checksum(model)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    low, high = local.to(device), local.clone().to(device)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"distributed: the ranks' active edges differ at step {step} (checksums from "
                           f"{low.tolist()} to {high.tolist()}, this rank {dist.get_rank()}: {local.tolist()}); every "
                           "rank must select the same edges from the same weights")
