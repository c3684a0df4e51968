"""The shared training driver: one loop for every benchmark and layout.

It follows the MLPerf timing rules. Every data file a rank will read is
evicted from the page cache first, and ``cache_clear`` says whether that
worked on every rank. Model construction and the initial broadcast happen
between init_start and init_stop; data staging too, by default (the HPC
v3.0 rules let data start on any durable storage, so staging may sit inside
init; ``data.staging: timed`` puts it after run_start, as earlier rules
required), and the staged copies are evicted again so that they start on
disk, not in memory. run_start is logged after a barrier, so the time to
train is the whole job's; every data read falls inside the timed region;
each epoch is followed by a full evaluation whose metric is reduced over
all replicas; the run stops at the benchmark's target. Any failure, on any
rank, ends with run_stop status=aborted in the log and a non-zero exit
everywhere, never a hang: also when another rank is killed outright.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tensorflow as tf
from mlperf_logging.mllog import constants as keys

from core import mllogging, staging
from core.benchmark import SPLITS, Benchmark
from core.mllogging import MLPerfLog
from core.progress import Progress
from core.runtime import threads_per_process
from mlperf_hpc.divergence import DivergenceGuard
from mlperf_hpc.provenance import harness_commit
from parallel.instances import StartGate
from parallel.layouts import Layout, SingleProcess, Trainer

# Open MPI sends SIGKILL this long after its SIGTERM (odls_base_sigkill_timeout).
SIGKILL_AFTER_SECONDS = 1.0


@dataclass
class EpochRecord:
    epoch: int
    train_seconds: float
    eval_seconds: float
    samples: int
    metric: float
    train_loss: float               # the mean over the epoch's steps and the replicas


@dataclass
class RunResult:
    log_path: Path | None
    reached_target: bool
    time_to_train: float                     # seconds, run_start to run_stop
    staging_seconds: float
    global_batch: int
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_because: str | None = None       # the divergence guard's sign, if it stopped the run

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


@dataclass
class _RunState:
    """What the abort paths need to know about a run in progress."""
    log: MLPerfLog
    gate: StartGate | None
    run_started: bool = False

    @property
    def run_metadata(self) -> dict:
        return {"instance_id": self.gate.instance_id} if self.gate else {}

    def abort(self) -> None:
        if self.run_started:
            self.log.stop_run("aborted", self.run_metadata)


class Terminated(SystemExit):
    """SIGTERM arrived (mpirun stopping the job because another rank died)."""


def _raise_terminated(signum, frame):
    raise Terminated(128 + signum)


class TerminationWatcher:
    """Ends the log when mpirun terminates this rank while it waits inside a
    collective. A peer that is killed outright (SIGKILL, the OOM killer)
    leaves the others blocked in C code, where no Python signal handler can
    run before mpirun's SIGKILL follows its SIGTERM. Python's C-level handler
    still writes the signal's number to the wakeup fd at once; this thread
    reads it, writes run_stop aborted, and exits the process."""

    def __init__(self, on_terminate: Callable[[], None]):
        self.on_terminate = on_terminate
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self.write_fd = write_fd
        threading.Thread(target=self._watch, name="termination-watcher", daemon=True).start()

    def _watch(self) -> None:
        while True:
            try:
                received = os.read(self.read_fd, 64)
            except OSError:                   # closed: the run is over
                return
            if not received:
                return
            if signal.SIGTERM in received:
                self.on_terminate()
                # The main thread may still get to end the run itself; the
                # log is complete either way, and SIGKILL follows shortly.
                time.sleep(SIGKILL_AFTER_SECONDS / 2)
                os._exit(128 + signal.SIGTERM)

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        os.close(self.write_fd)
        os.close(self.read_fd)


def train(benchmark: Benchmark, config: Any, layout: Layout | None = None,
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
    state = _RunState(log, start_gate)
    # mpirun answers a dead rank with SIGTERM to the others; turning it into an
    # exception lets rank 0 still write run_stop status=aborted.
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    watcher = TerminationWatcher(state.abort) if log.enabled else None
    try:
        result, trainer = _train(benchmark, config, layout, log, progress, state)
        if save_weights:
            trainer.save_weights(save_weights)
        # Ranks leave together: once one exits non-zero (target missed),
        # mpirun kills the rest, so rank 0 must have finished writing.
        layout.barrier()
        return result
    except BaseException as err:
        state.abort()
        layout.abort(failed_here=not layout.is_peer_failure(err))
        raise
    finally:
        if watcher:
            watcher.close()
        signal.signal(signal.SIGTERM, previous)
        log.close()


def _data_files(benchmark: Benchmark, config: Any, layout: Layout) -> tuple[list[str], list[str]]:
    """(the files this rank reads from, the node-local copies it reads instead
    when staging): both must be out of the page cache at run_start."""
    where = (layout.data_shard_index, layout.data_shards)
    shard = [f for split in SPLITS for f in benchmark.shard_files(config, split, *where)]
    shard += benchmark.shared_files(config)
    staged = ([f for split in SPLITS for f in benchmark.local_files(config, split, *where)]
              if config.data.stage_dir else [])
    return shard, staged


def _evict_everywhere(files: list[str], layout: Layout) -> bool:
    """Evict ``files`` from this node's page cache; whether every rank managed."""
    return layout.all_ranks(not staging.evict([f for f in files if Path(f).exists()]))


def _stage(benchmark: Benchmark, config: Any, layout: Layout, log: MLPerfLog) -> float:
    """Copy this replica's files to node-local storage (if configured) between
    staging_start and staging_stop; returns the seconds it took."""
    start = time.monotonic()
    log.start(keys.STAGING_START)
    benchmark.stage(config, layout.data_shard_index, layout.data_shards)
    layout.barrier()
    log.end(keys.STAGING_STOP)
    return time.monotonic() - start


@dataclass
class _Run:
    """One training run's context, stepped by ``_train``: init, then epochs
    of training and evaluation."""
    benchmark: Benchmark
    config: Any
    layout: Layout
    log: MLPerfLog
    progress: Progress
    state: _RunState
    learning_rate: float | None = None      # the trainer's current rate, set only when it changes

    def init(self) -> tuple[Trainer, int, int, float]:
        """cache_clear, then init_start to init_stop: the run's keys, the model
        and (untimed, by default) staging. Returns (trainer, seed, global
        batch, staging seconds)."""
        benchmark, config, layout, log = self.benchmark, self.config, self.layout, self.log
        topology = layout.topology
        sources, staged = _data_files(benchmark, config, layout)
        cache_cleared = _evict_everywhere(sources + staged, layout)
        if not cache_cleared:
            self.progress.say("warning: some data files could not be evicted from the page cache; logging "
                              "cache_clear false")
        log.event(keys.CACHE_CLEAR, cache_cleared)
        log.start(keys.INIT_START)

        global_batch = config.data.batch_size * layout.data_shards
        seed = seed_for_run(config.train.seed)
        log.submission(config.mlperf, benchmark.facts.name)
        log.event(mllogging.NUMBER_OF_NODES, topology.nodes)
        log.event(mllogging.NUMBER_OF_RANKS, topology.size)
        log.event(mllogging.ACCELERATORS_PER_NODE, layout.accelerators)
        log.event(mllogging.PARALLEL_LAYOUT, layout.label)
        log.event(mllogging.THREADS_PER_PROCESS, threads_per_process())
        if log.enabled:
            log.event(mllogging.HARNESS_COMMIT, harness_commit())
        log.event(keys.SEED, seed)
        log.event(keys.GLOBAL_BATCH_SIZE, global_batch)
        for key, value in benchmark.hyperparameters(config, global_batch, layout.ranks_per_sample).items():
            log.event(key, value)

        # Replicas draw differently; the processes of one replica (a spatial
        # group) must agree, or their shuffles would feed them different samples.
        tf.keras.utils.set_random_seed(seed + layout.data_shard_index)
        trainer = layout.make_trainer(benchmark, config, seed)

        staging_seconds = 0.0
        if config.data.staging == "init":
            staging_seconds = _stage(benchmark, config, layout, log)
            # The copies were just written, so they sit in memory: data must start on disk.
            if not _evict_everywhere(staged, layout):
                self.progress.say("warning: staged copies could not be evicted from the page cache")
        log.end(keys.INIT_STOP)
        return trainer, seed, global_batch, staging_seconds

    def next_batch(self, iterator: Any) -> Any:
        try:
            return next(iterator)
        except tf.errors.OpError as err:
            raise self.benchmark.explain_data_error(self.config, self.layout.data_shard_index,
                                                    self.layout.data_shards, err) from None

    def train_epoch(self, epoch: int, trainer: Trainer, split: Any, batches: Any, global_batch: int) -> list:
        """One epoch's optimizer steps, between epoch_start and epoch_stop;
        returns each step's training loss."""
        self.log.start(keys.EPOCH_START, metadata={"epoch_num": epoch})
        start = time.monotonic()
        losses = []
        for step in range(1, split.steps + 1):
            global_step = (epoch - 1) * split.steps + step - 1
            value = self.benchmark.learning_rate(self.config, epoch - 1, global_step, global_batch)
            if value != self.learning_rate:
                trainer.set_learning_rate(value)
                self.learning_rate = value
            x, y = self.next_batch(batches)
            losses.append(trainer.train_step(x, y))
            self.progress.step(epoch, self.config.data.n_epochs, step, split.steps, step * global_batch,
                               time.monotonic() - start)
        self.log.end(keys.EPOCH_STOP, metadata={"epoch_num": epoch})
        return losses

    def evaluate(self, epoch: int, trainer: Trainer, split: Any, batches: Any, losses: list) -> tuple[float, float]:
        """A full evaluation between eval_start and eval_stop; returns the
        metric and the epoch's training loss, both reduced over the replicas
        in one allreduce, so every rank holds the same values."""
        self.log.start(keys.EVAL_START, metadata={"epoch_num": epoch})
        sums = tf.zeros([2])
        for _ in range(split.steps):
            x, y = self.next_batch(batches)
            sums += trainer.eval_sums(x, y)
        epoch_loss = tf.reduce_mean(tf.cast(tf.stack(losses), tf.float32))
        total, count, loss_sum = self.layout.allreduce_sum(tf.concat([sums, [epoch_loss]], 0)).numpy()
        metric, train_loss = float(total / count), float(loss_sum / self.layout.data_shards)
        self.log.end(keys.EVAL_STOP, metadata={"epoch_num": epoch})
        self.log.event(self.benchmark.facts.metric_key, metric, metadata={"epoch_num": epoch})
        return metric, train_loss


def _train(benchmark: Benchmark, config: Any, layout: Layout, log: MLPerfLog,
           progress: Progress, state: _RunState) -> tuple[RunResult, Trainer]:
    run = _Run(benchmark, config, layout, log, progress, state)
    trainer, seed, global_batch, staging_seconds = run.init()
    if state.gate and layout.topology.is_root:
        state.gate.wait()
    layout.barrier()
    log.start(keys.RUN_START, metadata=state.run_metadata or None)
    state.run_started = True
    run_start = time.monotonic()
    if config.data.staging == "timed":
        staging_seconds = _stage(benchmark, config, layout, log)

    pipelines = benchmark.pipelines(config, layout.data_shard_index, layout.data_shards, seed)
    log.event(keys.TRAIN_SAMPLES, pipelines.n_train)
    log.event(keys.EVAL_SAMPLES, pipelines.n_valid)
    train_batches = iter(trainer.device_input(pipelines.train.dataset))
    valid_batches = iter(trainer.device_input(pipelines.valid.dataset))   # one iterator for every evaluation
    guard = DivergenceGuard(config.train.divergence, benchmark.facts.lower_is_better, benchmark.facts.perfect_metric)
    result = RunResult(log.path, False, 0.0, staging_seconds, global_batch)
    facts = benchmark.facts
    for epoch in range(1, config.data.n_epochs + 1):
        start = time.monotonic()
        losses = run.train_epoch(epoch, trainer, pipelines.train, train_batches, global_batch)
        train_seconds = time.monotonic() - start
        start = time.monotonic()
        metric, train_loss = run.evaluate(epoch, trainer, pipelines.valid, valid_batches, losses)
        eval_seconds = time.monotonic() - start

        samples = pipelines.train.steps * global_batch
        result.epochs.append(EpochRecord(epoch, train_seconds, eval_seconds, samples, metric, train_loss))
        progress.say(f"epoch {epoch}: {facts.metric_name} {metric:.4f} (target "
                     f"{'<=' if facts.lower_is_better else '>='} {config.train.target})  loss {train_loss:.4g}  "
                     f"train {samples / train_seconds:.1f} samples/s  {train_seconds:.1f}s + eval {eval_seconds:.1f}s")
        if benchmark.reached(config, metric):
            result.reached_target = True
            break
        result.stopped_because = guard.sign(epoch, metric, train_loss)
        if result.stopped_because:
            break

    layout.barrier()
    result.time_to_train = time.monotonic() - run_start
    log.stop_run("success" if result.reached_target else "aborted", state.run_metadata)
    state.run_started = False
    return result, trainer
