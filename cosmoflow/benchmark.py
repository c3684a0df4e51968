"""CosmoFlow as a plug-in of the shared driver."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tensorflow as tf
from mlperf_logging.mllog import constants as keys

from cosmoflow import data
from cosmoflow.config import CosmoFlowConfig
from cosmoflow.model import build_model
from mlperf_hpc import mllogging, staging
from mlperf_hpc.benchmark import Benchmark, Pipelines
from mlperf_hpc.config import SubmissionInfo, load_config
from mlperf_hpc.errors import HarnessError

CONFIG_DIR = Path(__file__).parent / "configs"


def peak_learning_rate(base_lr: float, base_batch_size: int, scaling: str, global_batch: int) -> float:
    factor = global_batch / base_batch_size
    if scaling == "linear":
        return base_lr * factor
    if scaling == "sqrt":
        return base_lr * math.sqrt(factor)
    raise HarnessError(f"unknown lr_schedule.scaling '{scaling}': use linear or sqrt")


def learning_rate_at(epoch: int, base_lr: float, peak_lr: float, n_warmup_epochs: int,
                     decay_schedule: dict[int, float]) -> float:
    """The reference schedule for 0-based ``epoch``: linear warmup from the
    base to the peak rate, then the peak times the factor of the latest decay
    boundary strictly below the epoch."""
    if epoch < n_warmup_epochs:
        return base_lr + (peak_lr - base_lr) * epoch / n_warmup_epochs
    passed = [boundary for boundary in decay_schedule if boundary < epoch]
    return peak_lr * (decay_schedule[max(passed)] if passed else 1.0)


class CosmoFlow(Benchmark):
    name = "cosmoflow"
    metric_key = mllogging.EVAL_ERROR
    metric_name = "val MAE"
    lower_is_better = True

    def load_config(self, path: str | Path, overrides: dict[str, Any] | None = None) -> CosmoFlowConfig:
        config = load_config(path, CosmoFlowConfig, overrides)
        d = config.data
        if len(d.sample_shape) != 4:
            raise HarnessError(f"config {path}: data.sample_shape must be [D, H, W, C], got {d.sample_shape}")
        if config.optimizer.name.upper() != "SGD":
            raise HarnessError(f"config {path}: optimizer.name '{config.optimizer.name}' is not supported; "
                               f"CosmoFlow closed division uses SGD")
        peak_learning_rate(1.0, 1, config.lr_schedule.scaling, 1)
        return config

    def submission_info(self, config: CosmoFlowConfig) -> SubmissionInfo:
        return config.mlperf

    def local_batch_size(self, config: CosmoFlowConfig) -> int:
        return config.data.batch_size

    def max_epochs(self, config: CosmoFlowConfig) -> int:
        return config.data.n_epochs

    def target(self, config: CosmoFlowConfig) -> float:
        return config.train.target_mae

    def seed(self, config: CosmoFlowConfig) -> int | None:
        return config.train.seed

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
        s = config.lr_schedule
        return learning_rate_at(epoch, s.base_lr, self._peak(config, global_batch), s.n_warmup_epochs,
                                s.decay_schedule)

    def hyperparameters(self, config: CosmoFlowConfig, global_batch: int, ranks_per_sample: int) -> dict[str, Any]:
        s = config.lr_schedule
        boundaries = sorted(s.decay_schedule)
        values = {
            keys.OPT_NAME: "sgd",
            keys.OPT_BASE_LR: self._peak(config, global_batch),
            keys.OPT_LR_WARMUP_EPOCHS: s.n_warmup_epochs,
            keys.OPT_LR_WARMUP_FACTOR: self._peak(config, global_batch) / s.base_lr,
            keys.OPT_LR_DECAY_BOUNDARY_EPOCHS: boundaries,
            keys.OPT_LR_DECAY_FACTOR: [s.decay_schedule[b] for b in boundaries],
            mllogging.DROPOUT: config.model.dropout,
        }
        if config.model.l2 > 0:
            values[keys.OPT_WEIGHT_DECAY] = config.model.l2
        return values

    def _files(self, config: CosmoFlowConfig, split: str, shard_index: int, n_shards: int) -> list[str]:
        d = config.data
        n = d.n_train if split == "train" else d.n_valid
        return data.shard(data.list_files(d.data_dir, split, d.format, n, d.samples_per_file), n_shards, shard_index)

    def _local_files(self, config: CosmoFlowConfig, split: str, shard_index: int, n_shards: int) -> list[str]:
        files = self._files(config, split, shard_index, n_shards)
        if config.data.stage_dir:
            files = [str(staging.staged_path(f, config.data.stage_dir)) for f in files]
        return files

    def stage(self, config: CosmoFlowConfig, shard_index: int, n_shards: int) -> None:
        if config.data.stage_dir:
            for split in data.SPLITS:
                staging.stage(self._files(config, split, shard_index, n_shards), config.data.stage_dir)

    def pipelines(self, config: CosmoFlowConfig, shard_index: int, n_shards: int, seed: int) -> Pipelines:
        d = config.data
        global_batch = d.batch_size * n_shards
        if d.n_train % global_batch or d.n_train % (n_shards * d.samples_per_file):
            raise HarnessError(f"data.n_train={d.n_train} is not divisible by the global batch {global_batch} "
                               f"({n_shards} replicas x {d.batch_size}): change n_train or batch_size")
        common = dict(fmt=d.format, compression=d.compression, sample_shape=d.sample_shape,
                      batch_size=d.batch_size, shuffle=d.shuffle, apply_log=d.apply_log, prefetch=d.prefetch,
                      n_parallel_reads=d.n_parallel_reads, seed=seed + shard_index,
                      samples_per_file=d.samples_per_file)
        train_files = self._local_files(config, "train", shard_index, n_shards)
        valid_files = self._local_files(config, "validation", shard_index, n_shards)
        # Check one sample up front so that a wrong shape is one clear line
        # rather than a failure deep inside the first training step.
        data.check_file(train_files[0], d.format, d.compression, d.sample_shape)
        train = data.make_pipeline(train_files, training=True, **common)
        valid = data.make_pipeline(valid_files, training=False, **common)
        return Pipelines(train.dataset, valid.dataset, train.steps, valid.steps, d.n_train, d.n_valid)

    def explain_data_error(self, config: CosmoFlowConfig, shard_index: int, n_shards: int,
                           error: Exception) -> Exception:
        d = config.data
        for split in data.SPLITS:
            data.find_bad_file(self._local_files(config, split, shard_index, n_shards), d.format, d.compression,
                               d.sample_shape)
        reason = str(error).strip().splitlines()[0][:200]
        return HarnessError(f"input pipeline failed reading {d.data_dir} ({reason}); no single bad file found")

    def loss(self, labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.square(labels - predictions))

    def metric_sums(self, labels: tf.Tensor, predictions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # MAE over all targets of all samples, as Keras' 'mae' metric.
        errors = tf.abs(labels - predictions)
        return tf.reduce_sum(errors), tf.cast(tf.size(errors), tf.float32)
