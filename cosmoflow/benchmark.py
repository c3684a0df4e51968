"""CosmoFlow as the driver trains it (its facts are in ``cosmoflow.facts``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tensorflow as tf
from mlperf_logging.mllog import constants as keys

from cosmoflow import data
from cosmoflow.facts import FACTS
from cosmoflow.config import CosmoFlowConfig
from cosmoflow.model import build_model
from core import mllogging
from core.benchmark import RAW_SUFFIX, Benchmark, Pipelines
from core.errors import HarnessError


def peak_learning_rate(base_lr: float, base_batch_size: int, scaling: str, global_batch: int) -> float:
    factor = global_batch / base_batch_size
    if scaling == "linear":
        return base_lr * factor
    if scaling == "sqrt":
        return base_lr * math.sqrt(factor)
    raise ValueError(f"unknown lr_schedule.scaling {scaling!r}")


def learning_rate_at(epoch: int, base_lr: float, peak_lr: float, n_warmup_epochs: int,
                     decay_schedule: dict[int, float]) -> float:
    """The reference schedule for 0-based ``epoch``: linear warmup from the
    base to the peak rate, then the peak times the factor of the latest decay
    boundary strictly below the epoch."""
    if epoch < n_warmup_epochs:
        return base_lr + (peak_lr - base_lr) * epoch / n_warmup_epochs
    passed = [boundary for boundary in decay_schedule if boundary < epoch]
    return peak_lr * (decay_schedule[max(passed)] if passed else 1.0)


def schedule_epochs(config: CosmoFlowConfig, global_batch: int) -> tuple[int, dict[int, float]]:
    """Warmup epochs and decay boundaries (epoch -> factor) at this global
    batch: as configured, or stretched by global/base batch when the
    schedule is set to stretch with the batch."""
    s = config.lr_schedule
    if not s.stretch_with_batch:
        return s.n_warmup_epochs, dict(s.decay_schedule)
    stretch = global_batch / s.base_batch_size
    return (round(s.n_warmup_epochs * stretch),
            {max(1, round(epoch * stretch)): factor for epoch, factor in s.decay_schedule.items()})


class CosmoFlow(Benchmark):
    """The reference model, SGD with the reference schedule, MSE loss, MAE metric."""

    facts = FACTS
    input_dtype = "int16"

    def build_model(self, config: CosmoFlowConfig) -> tf.keras.Model:
        m = config.model
        return build_model(config.data.sample_shape, kernel_size=m.kernel_size, conv_size=m.conv_size,
                           n_conv_layers=m.n_conv_layers, fc1_size=m.fc1_size, fc2_size=m.fc2_size,
                           dropout=m.dropout, l2=m.l2)

    def mesh_model(self, config: CosmoFlowConfig, split: tuple[int, int]) -> "CosmoFlowMesh":
        from cosmoflow.mesh_model import CosmoFlowMesh

        m = config.model
        if m.l2 > 0:
            raise HarnessError(f"model.l2={m.l2}: the spatial layouts do not apply L2 regularisation; "
                               f"set model.l2 to 0 or use --layout data")
        if not config.data.apply_log:
            raise HarnessError("data.apply_log=false divides each sample by its own mean, which a process "
                               "holding one block of it cannot find: set data.apply_log to true (the "
                               "reference's) or use --layout data")
        return CosmoFlowMesh(list(config.data.sample_shape), split, kernel_size=m.kernel_size,
                             conv_size=m.conv_size, n_conv_layers=m.n_conv_layers, fc1_size=m.fc1_size,
                             fc2_size=m.fc2_size, dropout=m.dropout, momentum=config.optimizer.momentum)

    def make_optimizer(self, config: CosmoFlowConfig) -> tf.keras.optimizers.Optimizer:
        return tf.keras.optimizers.SGD(learning_rate=config.lr_schedule.base_lr,
                                       momentum=config.optimizer.momentum)

    def _peak(self, config: CosmoFlowConfig, global_batch: int) -> float:
        s = config.lr_schedule
        return peak_learning_rate(s.base_lr, s.base_batch_size, s.scaling, global_batch)

    def learning_rate(self, config: CosmoFlowConfig, epoch: int, step: int, global_batch: int) -> float:
        warmup, decays = schedule_epochs(config, global_batch)
        return learning_rate_at(epoch, config.lr_schedule.base_lr, self._peak(config, global_batch), warmup, decays)

    def hyperparameters(self, config: CosmoFlowConfig, global_batch: int, ranks_per_sample: int) -> dict[str, Any]:
        warmup, decays = schedule_epochs(config, global_batch)
        boundaries = sorted(decays)
        values = {
            keys.OPT_NAME: "sgd",
            keys.OPT_BASE_LR: self._peak(config, global_batch),
            keys.OPT_LR_WARMUP_EPOCHS: warmup,
            keys.OPT_LR_WARMUP_FACTOR: self._peak(config, global_batch) / config.lr_schedule.base_lr,
            keys.OPT_LR_DECAY_BOUNDARY_EPOCHS: boundaries,
            keys.OPT_LR_DECAY_FACTOR: [decays[b] for b in boundaries],
            mllogging.DROPOUT: config.model.dropout,
        }
        if config.model.l2 > 0:
            values[keys.OPT_WEIGHT_DECAY] = config.model.l2
        return values

    def dataset_files(self, config: CosmoFlowConfig, split: str) -> list[str]:
        d = config.data
        n = d.n_train if split == "train" else d.n_valid
        return data.list_files(d.data_dir, split, d.format, n, d.samples_per_file)

    def check_file(self, config: CosmoFlowConfig, path: str) -> None:
        fmt = "raw" if path.endswith(RAW_SUFFIX) else config.data.format
        data.check_file(path, fmt, config.data.compression, config.data.sample_shape)

    def write_raw(self, config: CosmoFlowConfig, src: str, dst: Path) -> None:
        d = config.data
        data.convert_to_raw(src, dst, d.format, d.compression, d.sample_shape)

    def pipelines(self, config: CosmoFlowConfig, shard_index: int, n_shards: int, seed: int) -> Pipelines:
        d = config.data
        common = dict(fmt="raw" if self.reads_raw(config) else d.format, compression=d.compression,
                      sample_shape=d.sample_shape, batch_size=d.batch_size, shuffle=d.shuffle, prefetch=d.prefetch,
                      n_parallel_reads=d.n_parallel_reads, seed=seed + shard_index,
                      samples_per_file=d.samples_per_file, cache=d.cache)
        train_files = self.local_files(config, "train", shard_index, n_shards)
        valid_files = self.local_files(config, "validation", shard_index, n_shards)
        # Check one sample up front so that a wrong shape is one clear line
        # rather than a failure deep inside the first training step.
        self.check_file(config, train_files[0])
        return Pipelines(data.make_pipeline(train_files, training=True, **common),
                         data.make_pipeline(valid_files, training=False, **common), d.n_train, d.n_valid)

    def normalise(self, config: CosmoFlowConfig, x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        if config.data.apply_log:
            return tf.math.log1p(x)
        # The reference's other option: each sample over its own mean.
        return x / tf.reduce_mean(x, axis=list(range(1, x.shape.rank)), keepdims=True)

    def loss(self, labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.square(labels - predictions))

    def metric_sums(self, labels: tf.Tensor, predictions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # MAE over all targets of all samples, as Keras' 'mae' metric.
        errors = tf.abs(labels - predictions)
        return tf.reduce_sum(errors), tf.cast(tf.size(errors), tf.float32)
