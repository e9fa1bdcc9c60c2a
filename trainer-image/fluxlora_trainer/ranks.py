"""The data-parallel ranks of one trainer pod. With N GPUs (or FLUXLORA_PROCESSES on a CPU)
the trainer runs N processes under torch's elastic launcher, one per GPU: every rank draws the
same global batch (batchSize x N images) and trains on its own slice of it, and the gradients of
the LoRA weights are averaged over the ranks (NCCL on GPUs, gloo on CPUs), so N ranks take the
step one process would take on the whole batch. The launcher fetches and checks the dataset
before the ranks start (cli.py); rank 0 alone reports progress and writes checkpoints and
outputs."""

import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from fluxlora_trainer.errors import Stopped

logger = logging.getLogger(__name__)

PROCESSES_ENV = "FLUXLORA_PROCESSES"  # ranks on a machine without GPUs (the tests)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def slice(self, items: list | torch.Tensor, per_rank: int) -> Any:
        """This rank's part of a global batch."""
        return items[self.rank * per_rank : (self.rank + 1) * per_rank]


ONE = Ranks()  # a run without a launcher


def this_process() -> Ranks:
    """The rank the launcher gave this process (one rank when there is no launcher)."""
    return Ranks(
        rank=int(os.environ.get("RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
        local=int(os.environ.get("LOCAL_RANK", 0)),
    )


def launched() -> bool:
    return "LOCAL_RANK" in os.environ


def wanted_processes() -> int:
    """One rank per GPU the pod was given; FLUXLORA_PROCESSES on CPUs."""
    if os.environ.get(PROCESSES_ENV):
        return int(os.environ[PROCESSES_ENV])
    return max(1, torch.cuda.device_count())


def join(ranks: Ranks, device: torch.device) -> None:
    if ranks.world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        logger.info("rank %d of %d on %s", ranks.rank, ranks.world, device)


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def from_main(value: Any, ranks: Ranks) -> Any:
    """Rank 0's `value`, on every rank (pickled: small objects only)."""
    if ranks.world == 1:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether `flag` holds on any rank (one tiny all-reduce when there are several)."""
    if ranks.world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def same_everywhere(tensors: list[torch.Tensor], ranks: Ranks) -> None:
    """Rank 0's values in `tensors` on every rank."""
    if ranks.world > 1:
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


def average(tensors: list[torch.Tensor], ranks: Ranks) -> None:
    """Each tensor replaced, in place, by its mean over the ranks: one all-reduce for all."""
    if ranks.world == 1:
        return
    flat = torch._utils._flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat /= ranks.world
    for tensor, mean in zip(
        tensors, torch._utils._unflatten_dense_tensors(flat, tensors), strict=True
    ):
        tensor.copy_(mean)


def launch(command: list[str], processes: int) -> dict[int, int]:
    """Run `python -m fluxlora_trainer.cli <command>` as `processes` ranks on this machine;
    the ranks that failed and their exit codes (negative: the signal that ended it), none when
    all succeeded. The launcher ends the other ranks at the first failure it sees, with
    SIGTERM; ranks that failed before it looked are all there."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=processes,
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port: one pod, one machine
        run_id=str(uuid.uuid4()),
        max_restarts=0,  # a failed rank fails the pod, which the Job retries
        monitor_interval=1,
    )
    logger.info("starting %d ranks, one per GPU", processes)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "fluxlora_trainer.cli", *command)
    except SignalException as error:  # the launcher has stopped the ranks with the same signal
        raise Stopped(signal.Signals(error.sigval).name) from None
    except ChildFailedError as error:
        return {rank: failure.exitcode for rank, failure in error.failures.items()}
    return {}
