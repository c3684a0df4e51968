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

import os
import time
from pathlib import Path
from typing import Any, Protocol

import tensorflow as tf

from core.benchmark import Benchmark
from core.errors import RankError
from core.runtime import PEER_EXIT_GRACE_SECONDS
from parallel.topology import GPUS_PER_NODE_ENV, ProcessTopology

_accelerators_per_node: list[int] = []            # this process's choice, made once


def tensorflow_context_started() -> bool:
    """Whether TensorFlow's eager context exists (the first op creates it):
    from then on the devices it sees are fixed."""
    from tensorflow.python.eager import context

    return context.context()._context_handle is not None


def select_accelerator(local_rank: int) -> int:
    """Give each rank on a node its own GPU, once per process; returns
    accelerators per node. A rank that expects a GPU (its job says the node
    has some, or TensorFlow is the CUDA build) and finds none stops: a GPU
    run never quietly trains on the CPU. ``MLPERF_HPC_GPUS_PER_NODE=0``
    runs a CUDA build on CPUs. The choice must come before TensorFlow's
    context starts (choosing a GPU later raises on a multi-GPU node), so
    every layout makes it as it is built and the order is checked on any
    machine, with or without a GPU."""
    if _accelerators_per_node:
        return _accelerators_per_node[0]
    if tensorflow_context_started():
        raise RuntimeError("a layout must be built before the first TensorFlow op: the GPU is chosen then")
    gpus = tf.config.list_physical_devices("GPU")
    declared = os.environ.get(GPUS_PER_NODE_ENV)
    expected = int(declared) if declared and declared.isdigit() else (1 if tf.test.is_built_with_cuda() else 0)
    if expected and not gpus:
        raise RankError(f"this rank expected a GPU ({f'{GPUS_PER_NODE_ENV}={declared}' if declared else 'TensorFlow is the CUDA build'}) "
                        f"but TensorFlow finds none: check CUDA_VISIBLE_DEVICES, nvidia-smi and the CUDA wheels "
                        f"(setup.sh --gpu); set {GPUS_PER_NODE_ENV}=0 to train on the CPU on purpose")
    if gpus:
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
    # One GPU visible per rank (the job's binding) still means the node's count.
    _accelerators_per_node.append(int(declared) if declared and declared.isdigit() and gpus else len(gpus))
    return _accelerators_per_node[0]


class Trainer(Protocol):
    """A model under a layout, as the driver steps it. Its steps take the
    pipelines' raw batches and normalise them first (``Benchmark.normalise``)."""

    def set_learning_rate(self, value: float) -> None: ...

    def device_input(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        """``dataset`` as the steps read it: on a GPU, its batches copied to
        the device ahead of the step that needs them."""

    def train_step(self, x: tf.Tensor, y: tf.Tensor) -> Any:
        """One optimizer step; returns this replica's training loss (a scalar)."""

    def eval_sums(self, x: tf.Tensor, y: tf.Tensor) -> Any:
        """This replica's (sum, count) of the eval metric over a batch."""

    def save_weights(self, path: str | Path) -> None:
        """Rank 0 writes the full model's weights (Keras HDF5); every rank calls it."""


class Layout(Protocol):
    """What every layout gives the driver: where this process sits, which
    share of the data it reads, its trainer, and every collective."""

    name: str
    topology: ProcessTopology
    accelerators: int             # per node, as logged

    @property
    def label(self) -> str: ...

    @property
    def data_shards(self) -> int: ...

    @property
    def data_shard_index(self) -> int: ...

    @property
    def ranks_per_sample(self) -> int: ...

    def make_trainer(self, benchmark: Benchmark, config: Any, seed: int) -> Trainer: ...

    def wrap_tape(self, tape: tf.GradientTape) -> tf.GradientTape: ...

    def broadcast_variables(self, variables: list[tf.Variable]) -> None: ...

    def allreduce_sum(self, value: tf.Tensor) -> tf.Tensor: ...

    def all_ranks(self, flag: bool) -> bool: ...

    def barrier(self) -> None: ...

    def abort(self, failed_here: bool) -> None: ...

    def is_peer_failure(self, error: BaseException) -> bool: ...


class SingleProcess:
    """One process, no communication."""

    name = "single"

    def __init__(self) -> None:
        self.topology = ProcessTopology()
        self.accelerators = select_accelerator(self.topology.local_rank)

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
        self.accelerators = select_accelerator(self.topology.local_rank)

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
            time.sleep(PEER_EXIT_GRACE_SECONDS)

    def is_peer_failure(self, error: BaseException) -> bool:
        from horovod.common.exceptions import HorovodInternalError

        text = str(error)
        return (isinstance(error, (HorovodInternalError, SystemExit))
                or "Horovod has been shut down" in text or "HorovodAllreduce" in text)


def step_device(accelerators: int) -> str:
    """The device a rank trains on: its one visible GPU, if the node has
    any (``select_accelerator`` leaves one per rank), else the CPU."""
    return "/GPU:0" if accelerators else "/CPU:0"


# Batches a GPU rank holds on the device ahead of its step.
DEVICE_PREFETCH = 2


class KerasTrainer:
    """The benchmark's Keras model, stepped under a Keras-replica layout
    (single process or data-parallel): the layout's tape averages gradients."""

    def __init__(self, benchmark: Benchmark, config: Any, layout: Layout):
        self.layout = layout
        self.device = step_device(layout.accelerators)
        self.model = model = benchmark.build_model(config)
        self.optimizer = optimizer = benchmark.make_optimizer(config)
        optimizer.build(model.trainable_variables)
        layout.broadcast_variables(model.variables + optimizer.variables)

        def normalise(x):
            # Pinned, so that a GPU rank never normalises on the host.
            with tf.device(self.device):
                return benchmark.normalise(config, x)

        @tf.function(reduce_retracing=True)
        def train_step(x, y):
            x = normalise(x)
            with tf.GradientTape() as tape:
                predictions = model(x, training=True)
                loss = benchmark.loss(y, predictions)
                if model.losses:
                    loss += tf.add_n(model.losses)
            tape = layout.wrap_tape(tape)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        @tf.function(reduce_retracing=True)
        def eval_sums(x, y):
            return tf.stack(benchmark.metric_sums(y, model(normalise(x), training=False)))

        self.train_step = train_step
        self.eval_sums = eval_sums

    def device_input(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        if self.device == "/CPU:0":
            return dataset
        return dataset.apply(tf.data.experimental.prefetch_to_device(self.device, DEVICE_PREFETCH))

    def set_learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate.assign(value)

    def save_weights(self, path: str | Path) -> None:
        if self.layout.topology.is_root:
            self.model.save_weights(str(path))
