"""Parallel layouts: how the shared driver spreads training over processes.

A layout owns every collective the driver needs (gradient reduction, initial
broadcast, metric reduction, barriers, abort) and says which share of the
data this process reads. ``SingleProcess`` is the identity; ``DataParallel``
runs Horovod over MPI: one model replica per rank, each reading its own shard,
gradients averaged every step.
"""
from __future__ import annotations

import time

import tensorflow as tf

from mlperf_hpc.errors import HarnessError
from parallel import TRAINABLE_LAYOUTS
from parallel.topology import ProcessTopology

PEER_GRACE_SECONDS = 2.0


class SingleProcess:
    """One process, no communication."""

    name = "single"

    def __init__(self) -> None:
        self.topology = ProcessTopology()

    @property
    def data_shards(self) -> int:
        """How many replicas read distinct data (the global batch multiplier)."""
        return self.topology.size

    @property
    def data_shard_index(self) -> int:
        return self.topology.rank

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        return tape

    def broadcast_variables(self, variables: list[tf.Variable]) -> None:
        """Make every replica start from rank 0's values."""

    def allreduce_sum(self, value: tf.Tensor) -> tf.Tensor:
        return value

    def barrier(self) -> None:
        """Wait for every process."""

    def abort(self, failed_here: bool) -> None:
        """Make the other processes stop too (they may be waiting on this one)."""

    def is_peer_failure(self, error: BaseException) -> bool:
        """Whether ``error`` means another process failed, not this one."""
        return False


class DataParallel(SingleProcess):
    """Horovod (MPI controller) data parallelism."""

    name = "data"

    def __init__(self) -> None:
        import horovod.tensorflow as hvd

        self.hvd = hvd
        hvd.init()
        self.topology = ProcessTopology(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                                        local_size=hvd.local_size(), nodes=hvd.cross_size())

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        return self.hvd.DistributedGradientTape(tape)

    def broadcast_variables(self, variables: list[tf.Variable]) -> None:
        self.hvd.broadcast_variables(variables, root_rank=0)

    def allreduce_sum(self, value: tf.Tensor) -> tf.Tensor:
        return self.hvd.allreduce(value, op=self.hvd.Sum)

    def barrier(self) -> None:
        # An allreduce every rank must join; uses the same engine as training.
        self.hvd.allreduce(tf.zeros([1]), op=self.hvd.Sum, name="barrier")

    def abort(self, failed_here: bool) -> None:
        # Shutting Horovod down makes every other rank's pending or next
        # collective fail at once, so they stop instead of waiting forever.
        self.hvd.shutdown()
        if not failed_here:
            # Let the rank that failed print its error and exit first: once
            # any rank exits non-zero, mpirun kills the rest of the job.
            time.sleep(PEER_GRACE_SECONDS)

    def is_peer_failure(self, error: BaseException) -> bool:
        from horovod.common.exceptions import HorovodInternalError

        text = str(error)
        return (isinstance(error, (HorovodInternalError, SystemExit))
                or "Horovod has been shut down" in text or "HorovodAllreduce" in text)


def make_layout(name: str) -> SingleProcess:
    if name == "single":
        return SingleProcess()
    if name == "data":
        return DataParallel()
    if name in ("spatial", "hybrid"):
        raise HarnessError(f"the {name} layout (Mesh TensorFlow) is not implemented yet: use --layout data")
    raise HarnessError(f"unknown layout '{name}': use one of {', '.join(TRAINABLE_LAYOUTS)}")
