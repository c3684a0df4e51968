"""The shared training driver: one loop for every benchmark and layout.

It follows the MLPerf timing rules: model construction and the initial
broadcast happen between init_start and init_stop; run_start is logged after
a barrier, so the time to train is the whole job's; data staging and every
data read fall inside the timed region; each epoch is followed by a full
evaluation whose metric is reduced over all replicas; the run stops at the
benchmark's target. Any failure, on any rank, ends with run_stop
status=aborted in the log and a non-zero exit everywhere, never a hang.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tensorflow as tf
from mlperf_logging.mllog import constants as keys

from core.benchmark import Benchmark
from core import mllogging
from core.mllogging import MLPerfLog
from core.progress import Progress
from parallel.instances import StartGate
from parallel.layouts import SingleProcess, Trainer


@dataclass
class EpochRecord:
    epoch: int
    train_seconds: float
    eval_seconds: float
    samples: int
    metric: float


@dataclass
class RunResult:
    log_path: Path | None
    reached_target: bool
    time_to_train: float                     # seconds, run_start to run_stop
    staging_seconds: float
    global_batch: int
    epochs: list[EpochRecord] = field(default_factory=list)

    @property
    def train_samples_per_second(self) -> float:
        seconds = sum(e.train_seconds for e in self.epochs)
        return sum(e.samples for e in self.epochs) / seconds if seconds else 0.0

    @property
    def final_metric(self) -> float:
        return self.epochs[-1].metric if self.epochs else float("nan")


def seed_for_run(configured: int | None) -> int:
    """The configured seed, or a fresh one so that repeated runs differ."""
    return configured if configured is not None else int.from_bytes(os.urandom(4), "little") % 2**31


def use_local_accelerator(local_rank: int) -> int:
    """Give each rank on a node its own GPU; returns accelerators per node."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.config.set_visible_devices(gpus[local_rank % len(gpus)], "GPU")
    return len(gpus)


@dataclass
class _RunState:
    """What the abort path needs to know about a run in progress."""
    gate: StartGate | None
    run_started: bool = False

    @property
    def run_metadata(self) -> dict:
        return {"instance_id": self.gate.instance_id} if self.gate else {}


class Terminated(SystemExit):
    """SIGTERM arrived (mpirun stopping the job because another rank died)."""


def _raise_terminated(signum, frame):
    raise Terminated(128 + signum)


def train(benchmark: Benchmark, config: Any, layout: SingleProcess | None = None,
          log_path: str | Path | None = None, show_progress: bool = True,
          save_weights: str | Path | None = None, start_gate: StartGate | None = None) -> RunResult:
    """Train ``benchmark`` to its target (or its epoch limit) and log it;
    rank 0 saves the final weights to ``save_weights`` (HDF5) if given. With
    a ``start_gate`` (weak scaling) the run is one instance of several: its
    log carries the instance id and its timed run starts with the others'."""
    layout = layout or SingleProcess()
    topology = layout.topology
    log = MLPerfLog(Path(log_path) if log_path else None, enabled=topology.is_root)
    progress = Progress(benchmark.facts.name, enabled=show_progress and topology.is_root)
    state = _RunState(start_gate)
    # mpirun answers a dead rank with SIGTERM to the others; turning it into an
    # exception lets rank 0 still write run_stop status=aborted.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        result, trainer = _train(benchmark, config, layout, log, progress, state)
        if save_weights:
            trainer.save_weights(save_weights)
        # Ranks leave together: once one exits non-zero (target missed),
        # mpirun kills the rest, so rank 0 must have finished writing.
        layout.barrier()
        return result
    except BaseException as err:
        if state.run_started:
            log.end(keys.RUN_STOP, metadata={"status": "aborted", **state.run_metadata})
        layout.abort(failed_here=not layout.is_peer_failure(err))
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        log.close()


def _train(benchmark: Benchmark, config: Any, layout: SingleProcess, log: MLPerfLog,
           progress: Progress, state: _RunState) -> tuple[RunResult, Trainer]:
    topology = layout.topology
    log.event(keys.CACHE_CLEAR, True)
    log.start(keys.INIT_START)
    accelerators = use_local_accelerator(topology.local_rank)

    local_batch = config.data.batch_size
    global_batch = local_batch * layout.data_shards
    seed = seed_for_run(config.train.seed)
    log.submission(config.mlperf, benchmark.facts.name)
    log.event(mllogging.NUMBER_OF_NODES, topology.nodes)
    log.event(mllogging.NUMBER_OF_RANKS, topology.size)
    log.event(mllogging.ACCELERATORS_PER_NODE, accelerators)
    log.event(mllogging.PARALLEL_LAYOUT, layout.label)
    log.event(keys.SEED, seed)
    log.event(keys.GLOBAL_BATCH_SIZE, global_batch)
    for key, value in benchmark.hyperparameters(config, global_batch, layout.ranks_per_sample).items():
        log.event(key, value)

    # Replicas draw differently; the processes of one replica (a spatial
    # group) must agree, or their shuffles would feed them different samples.
    tf.keras.utils.set_random_seed(seed + layout.data_shard_index)
    trainer = layout.make_trainer(benchmark, config, seed)

    log.end(keys.INIT_STOP)
    if state.gate and topology.is_root:
        state.gate.wait()
    layout.barrier()
    log.start(keys.RUN_START, metadata=state.run_metadata or None)
    state.run_started = True
    run_start = time.monotonic()

    log.start(keys.STAGING_START)
    benchmark.stage(config, layout.data_shard_index, layout.data_shards)
    layout.barrier()
    log.end(keys.STAGING_STOP)
    staging_seconds = time.monotonic() - run_start

    pipelines = benchmark.pipelines(config, layout.data_shard_index, layout.data_shards, seed)
    log.event(keys.TRAIN_SAMPLES, pipelines.n_train)
    log.event(keys.EVAL_SAMPLES, pipelines.n_valid)

    def next_batch(iterator):
        try:
            return next(iterator)
        except tf.errors.OpError as err:
            raise benchmark.explain_data_error(config, layout.data_shard_index, layout.data_shards, err) from None

    result = RunResult(log.path, False, 0.0, staging_seconds, global_batch)
    max_epochs = config.data.n_epochs
    train_batches = iter(pipelines.train.dataset)
    learning_rate = None
    for epoch in range(1, max_epochs + 1):
        log.start(keys.EPOCH_START, metadata={"epoch_num": epoch})
        start = time.monotonic()
        for step in range(1, pipelines.train.steps + 1):
            global_step = (epoch - 1) * pipelines.train.steps + step - 1
            value = benchmark.learning_rate(config, epoch - 1, global_step, global_batch)
            if value != learning_rate:
                trainer.set_learning_rate(value)
                learning_rate = value
            x, y = next_batch(train_batches)
            trainer.train_step(x, y)
            progress.step(epoch, max_epochs, step, pipelines.train.steps, step * global_batch,
                          time.monotonic() - start)
        log.end(keys.EPOCH_STOP, metadata={"epoch_num": epoch})
        train_seconds = time.monotonic() - start

        log.start(keys.EVAL_START, metadata={"epoch_num": epoch})
        start = time.monotonic()
        sums = tf.zeros([2])
        valid_batches = iter(pipelines.valid.dataset)
        for _ in range(pipelines.valid.steps):
            x, y = next_batch(valid_batches)
            sums += trainer.eval_sums(x, y)
        total, count = layout.allreduce_sum(sums).numpy()
        metric = float(total / count)
        log.end(keys.EVAL_STOP, metadata={"epoch_num": epoch})
        log.event(benchmark.facts.metric_key, metric, metadata={"epoch_num": epoch})
        eval_seconds = time.monotonic() - start

        samples = pipelines.train.steps * global_batch
        result.epochs.append(EpochRecord(epoch, train_seconds, eval_seconds, samples, metric))
        progress.say(f"epoch {epoch}: {benchmark.facts.metric_name} {metric:.4f} (target "
                     f"{'<=' if benchmark.facts.lower_is_better else '>='} {config.train.target})  "
                     f"train {samples / train_seconds:.1f} samples/s  {train_seconds:.1f}s + eval {eval_seconds:.1f}s")
        if benchmark.reached(config, metric):
            result.reached_target = True
            break

    layout.barrier()
    result.time_to_train = time.monotonic() - run_start
    log.end(keys.RUN_STOP, metadata={"status": "success" if result.reached_target else "aborted",
                                     **state.run_metadata})
    state.run_started = False
    return result, trainer
