"""Parallel layouts: how the shared driver spreads training over processes.

A layout owns every collective the driver needs (gradient reduction, initial
broadcast, metric reduction, barriers, abort), says which share of the data
this process reads, and builds the trainer that runs the model's steps.
``SingleProcess`` is the identity; ``DataParallel`` runs Horovod over MPI: one
Keras model replica per rank, each reading its own shard, gradients averaged
every step. The spatial and hybrid layouts (``parallel.mesh``) split each
sample across processes with Mesh TensorFlow.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import tensorflow as tf

from core.benchmark import Benchmark
from parallel.topology import ProcessTopology

PEER_GRACE_SECONDS = 2.0


class Trainer(Protocol):
    """A model under a layout, as the driver steps it."""

    def set_learning_rate(self, value: float) -> None: ...

    def train_step(self, x: tf.Tensor, y: tf.Tensor) -> None: ...

    def eval_sums(self, x: tf.Tensor, y: tf.Tensor) -> Any:
        """This replica's (sum, count) of the eval metric over a batch."""

    def save_weights(self, path: str | Path) -> None:
        """Rank 0 writes the full model's weights (Keras HDF5); every rank calls it."""


class SingleProcess:
    """One process, no communication."""

    name = "single"

    def __init__(self) -> None:
        self.topology = ProcessTopology()

    @property
    def label(self) -> str:
        """The layout as logged (``parallel_layout``) and shown in reports."""
        return self.name

    @property
    def data_shards(self) -> int:
        """How many replicas read distinct data (the global batch multiplier)."""
        return self.topology.size

    @property
    def data_shard_index(self) -> int:
        return self.topology.rank

    @property
    def ranks_per_sample(self) -> int:
        """How many processes split each sample (1 unless spatial)."""
        return 1

    def make_trainer(self, benchmark: Benchmark, config: Any, seed: int) -> Trainer:
        """The model, its optimizer and its steps, set up for this layout."""
        return KerasTrainer(benchmark, config, self)

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        return tape

    def broadcast_variables(self, variables: list[tf.Variable]) -> None:
        """Make every replica start from rank 0's values."""

    def allreduce_sum(self, value: tf.Tensor) -> tf.Tensor:
        return value

    def all_ranks(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every process."""
        return flag

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

    def __init__(self, process_sets: list[list[int]] | None = None) -> None:
        import horovod.tensorflow as hvd

        self.hvd = hvd
        # Sub-groups of ranks (the mesh layouts' collectives) must be known
        # to Horovod, identically on every rank, when it starts.
        self.process_sets = {tuple(ranks): hvd.ProcessSet(ranks) for ranks in process_sets or []}
        hvd.init(process_sets=list(self.process_sets.values()) or None)
        self.topology = ProcessTopology(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                                        local_size=hvd.local_size(), nodes=hvd.cross_size())

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape:
        return self.hvd.DistributedGradientTape(tape)

    def broadcast_variables(self, variables: list[tf.Variable]) -> None:
        self.hvd.broadcast_variables(variables, root_rank=0)

    def allreduce_sum(self, value: tf.Tensor) -> tf.Tensor:
        return self.hvd.allreduce(value, op=self.hvd.Sum)

    def all_ranks(self, flag: bool) -> bool:
        return bool(self.hvd.allreduce(tf.constant([float(flag)]), op=self.hvd.Min, name="all_ranks").numpy()[0])

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


class KerasTrainer:
    """The benchmark's Keras model, stepped under a Keras-replica layout
    (single process or data-parallel): the layout's tape averages gradients."""

    def __init__(self, benchmark: Benchmark, config: Any, layout: SingleProcess):
        self.layout = layout
        self.model = model = benchmark.build_model(config)
        self.optimizer = optimizer = benchmark.make_optimizer(config)
        optimizer.build(model.trainable_variables)
        layout.broadcast_variables(model.variables + optimizer.variables)

        @tf.function(reduce_retracing=True)
        def train_step(x, y):
            with tf.GradientTape() as tape:
                predictions = model(x, training=True)
                loss = benchmark.loss(y, predictions)
                if model.losses:
                    loss += tf.add_n(model.losses)
            tape = layout.wrap_tape(tape)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        @tf.function(reduce_retracing=True)
        def eval_sums(x, y):
            return tf.stack(benchmark.metric_sums(y, model(x, training=False)))

        self.train_step = train_step
        self.eval_sums = eval_sums

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate.assign(value)

    def save_weights(self, path: str | Path) -> None:
        if self.layout.topology.is_root:
            self.model.save_weights(str(path))
