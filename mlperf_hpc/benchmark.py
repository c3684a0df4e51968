"""The small interface through which a benchmark plugs into the shared driver.

A benchmark supplies its config schema, data pipelines, model, optimizer,
learning-rate schedule, loss and evaluation metric, and the MLPerf keys that
describe its hyperparameters. The driver (``mlperf_hpc.driver``) owns the
loop, the parallel layout, MLPerf logging, progress and stopping.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from mlperf_hpc.config import SubmissionInfo


@dataclass
class Pipelines:
    """This replica's input: infinite training batches, one validation pass."""
    train: tf.data.Dataset
    valid: tf.data.Dataset
    train_steps: int          # steps per epoch
    valid_steps: int
    n_train: int              # global sample counts (logged)
    n_valid: int


class Benchmark(abc.ABC):
    name: str                 # submission_benchmark value
    metric_key: str           # MLPerf key of the eval metric (eval_error, eval_accuracy)
    metric_name: str          # short name shown in progress lines
    lower_is_better: bool

    @abc.abstractmethod
    def load_config(self, path: str | Path, overrides: dict[str, Any]) -> Any:
        """Read and validate a YAML config."""

    @abc.abstractmethod
    def submission_info(self, config: Any) -> SubmissionInfo: ...

    @abc.abstractmethod
    def local_batch_size(self, config: Any) -> int: ...

    @abc.abstractmethod
    def max_epochs(self, config: Any) -> int: ...

    @abc.abstractmethod
    def target(self, config: Any) -> float: ...

    @abc.abstractmethod
    def seed(self, config: Any) -> int: ...

    @abc.abstractmethod
    def build_model(self, config: Any) -> tf.keras.Model: ...

    @abc.abstractmethod
    def make_optimizer(self, config: Any) -> tf.keras.optimizers.Optimizer: ...

    @abc.abstractmethod
    def learning_rate(self, config: Any, epoch: int, step: int, global_batch: int) -> float:
        """Learning rate for 0-based ``epoch`` and 0-based optimizer ``step``
        (counted from the start of training) at this global batch size;
        per-epoch schedules ignore ``step``."""

    @abc.abstractmethod
    def hyperparameters(self, config: Any, global_batch: int, ranks_per_sample: int) -> dict[str, Any]:
        """MLPerf keys (opt_*, dropout, ...) and their values for the log;
        ``ranks_per_sample`` is how many processes split each sample."""

    @abc.abstractmethod
    def stage(self, config: Any, shard_index: int, n_shards: int) -> None:
        """Copy this replica's files to node-local storage, if configured."""

    @abc.abstractmethod
    def pipelines(self, config: Any, shard_index: int, n_shards: int, seed: int) -> Pipelines:
        """This replica's input; ``seed`` is the run's (shuffling differs per run)."""

    @abc.abstractmethod
    def loss(self, labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        """Mean loss over the local batch."""

    @abc.abstractmethod
    def metric_sums(self, labels: tf.Tensor, predictions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(sum, count) of the eval metric over a batch; the global metric is
        the sum over all replicas divided by the count over all replicas."""

    @abc.abstractmethod
    def explain_data_error(self, config: Any, shard_index: int, n_shards: int, error: Exception) -> Exception:
        """Turn an input-pipeline failure into a one-line error naming the file."""

    def mesh_model(self, config: Any, split: tuple[int, int]) -> Any:
        """The model in Mesh TensorFlow with each sample split ``split`` ways
        (depth x height blocks), for the spatial and hybrid layouts. It refuses
        a split the model's shapes cannot take, naming the layer and sizes."""
        from mlperf_hpc.errors import HarnessError

        raise HarnessError(f"{self.name} has no Mesh TensorFlow model yet: use --layout data")

    def reached(self, config: Any, value: float) -> bool:
        target = self.target(config)
        return value <= target if self.lower_is_better else value >= target


# name -> "module:class"; imported lazily so the CLI starts without TensorFlow.
BENCHMARKS = {"cosmoflow": "cosmoflow.benchmark:CosmoFlow", "deepcam": "deepcam.benchmark:DeepCAM"}


def get_benchmark(name: str) -> Benchmark:
    import importlib

    from mlperf_hpc.errors import HarnessError

    if name not in BENCHMARKS:
        raise HarnessError(f"unknown benchmark '{name}': use one of {', '.join(BENCHMARKS)}")
    module, cls = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
