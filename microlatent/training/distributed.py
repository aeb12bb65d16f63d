"""Data-parallel training with PyTorch's DistributedDataParallel, launched by ``torchrun``.

    torchrun --standalone --nproc_per_node 4 -m microlatent train cai_mse

trains the config that ``microlatent train cai_mse`` trains, on 4 GPUs (nccl; gloo on CPUs), to the
same weights within float rounding. ``train()`` finds torchrun's RANK, WORLD_SIZE and LOCAL_RANK in
the environment, joins the process group and uses GPU LOCAL_RANK; without them it is one process and
everything here does nothing.

How a data-parallel run stays the run one process would make:

- The global batch is ``optim.batch_size`` whatever the number of processes. Each batch of the loop's
  per-epoch permutation is cut into WORLD_SIZE contiguous shards (sizes differ by at most one) and
  rank r loads shard r. A rank left without images (a last batch smaller than WORLD_SIZE) loads the
  batch's first image and weighs it zero.
- Every loss term is a mean over the images of a batch, so rank r's loss is weighted by
  WORLD_SIZE * n_r / n before DDP averages the gradients: the average is the global batch's gradient.
- The VAE's reparameterisation noise is drawn for the whole global batch from the global RNG (seeded
  alike on every rank) and each rank keeps its rows: z is what one process would sample, and the RNG
  states of all ranks stay equal (so rank 0's checkpoint resumes every rank).
- Logged losses are reduced over the ranks; rank 0 alone writes the run folder; every rank reads
  checkpoint.pt on ``--resume`` (across machines the run folder must be on a shared file system).
- BatchNorm layers (resnet_vae) become SyncBatchNorm on GPUs. PyTorch has no SyncBatchNorm on CPU:
  there each rank normalises its own shard, and a resnet_vae run on CPU ranks differs from one process.
"""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist

from microlatent.errors import InputError


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous share of n items; the first n % world_size ranks get one more."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class Distributed:
    """This process's place in a data-parallel run: rank 0 of 1 unless started by torchrun."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | None = None):
        self.rank, self.world_size, self.device = rank, world_size, device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    def shard(self, batch):
        """This rank's contiguous share of a global batch of indices (the batch's first index if empty)."""
        start, end = shard_bounds(len(batch), self.rank, self.world_size)
        return batch[start:end] if end > start else batch[:1]

    def loss_weight(self, n: int) -> float:
        """Factor on this rank's mean loss that makes DDP's gradient average the global batch's mean
        (world_size * n_r / n; 1.0 in one process, 0.0 for a rank whose shard is empty)."""
        start, end = shard_bounds(n, self.rank, self.world_size)
        return self.world_size * (end - start) / n

    def wrap(self, model):
        """DistributedDataParallel around ``model`` (SyncBatchNorm on GPUs); ``model`` itself in one
        process."""
        if not self.enabled:
            return model
        if self.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device])
        return torch.nn.parallel.DistributedDataParallel(model)

    def noise(self, n: int, shape, device):
        """This rank's rows of the latent noise eps ~ N(0, I) of a global batch of ``n`` codes of
        ``shape``: drawn for the whole batch and sliced, so the numbers are those one process draws
        (float32, outside autocast, on every rank the same)."""
        eps = torch.randn((n, *shape), device=device)
        if not self.enabled:
            return eps
        start, end = shard_bounds(n, self.rank, self.world_size)
        return eps[start:end] if end > start else eps[:1]

    def mean_over_ranks(self, parts: dict, n: int, flag: bool = False):
        """(global-batch means of per-rank mean loss terms, whether ``flag`` is set on any rank).

        parts: name -> scalar tensor, this rank's means over its shard of a global batch of n images.
        One all-reduce per step; the flag (an interrupt) so stops every rank at the same step."""
        if not self.enabled:
            return parts, flag
        values = torch.stack([value.float() for value in parts.values()]) * (self.loss_weight(n) / self.world_size)
        values = torch.cat([values, torch.tensor([float(flag)], device=values.device)])
        dist.all_reduce(values)
        return dict(zip(parts, values[:-1])), bool(values[-1] > 0)

    def sum_over_ranks(self, numbers):
        """Element-wise sums over the ranks of a list of numbers (float64)."""
        if not self.enabled:
            return list(numbers)
        total = torch.tensor(numbers, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def barrier(self):
        if self.enabled:
            dist.barrier(device_ids=[self.device.index]) if self.device.type == "cuda" else dist.barrier()


SINGLE = Distributed()


def launched() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> tuple[Distributed, torch.device]:
    """(Distributed, device) for this process.

    Under torchrun: joins the default process group (nccl for CUDA, gloo for CPU) unless the caller
    already has, and replaces a CUDA device by GPU LOCAL_RANK. Otherwise: (SINGLE, device).
    """
    if not launched():
        return SINGLE, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise InputError(f"data-parallel training runs on CUDA GPUs or on CPUs, not on {device.type}")
    if not dist.is_initialized():
        # a long timeout: the other ranks wait at a barrier while rank 0 generates data (data.generate)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
        atexit.register(_destroy)
    if dist.get_world_size() != int(os.environ["WORLD_SIZE"]):
        raise InputError(
            f"the process group has {dist.get_world_size()} ranks but WORLD_SIZE is {os.environ['WORLD_SIZE']}"
        )
    return Distributed(dist.get_rank(), dist.get_world_size(), device), device


def _destroy():
    if dist.is_initialized():
        dist.destroy_process_group()
