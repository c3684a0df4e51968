"""DeepCAM as the driver trains it (its facts are in ``deepcam.facts``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tensorflow as tf
from mlperf_logging.mllog import constants as keys

from core.benchmark import Benchmark, Pipelines
from deepcam import data
from deepcam.facts import FACTS
from deepcam.config import DeepCAMConfig
from deepcam.model import build_model
from deepcam.objective import iou_per_sample, weighted_cross_entropy
from deepcam.optimizers import AdamFamily


def learning_rate_at(step: int, lr: float, warmup_steps: int, warmup_factor: float, scheduler: str,
                     milestones: list[int], decay_rate: float, t_max: int, eta_min: float) -> float:
    """The reference schedule at 0-based optimizer ``step``: warmup (factor 1:
    linear from 0 to ``lr``; factor f > 1: from ``lr`` to ``f * lr``), then
    multistep decay at ``milestones`` or cosine annealing over ``t_max``
    steps, both counted after the warmup."""
    if step < warmup_steps:
        if warmup_factor == 1.0:
            return lr * (step + 1) / warmup_steps
        return lr * ((warmup_factor - 1.0) * step / warmup_steps + 1.0)
    peak, after = lr * warmup_factor, step - warmup_steps
    if scheduler == "multistep":
        return peak * decay_rate ** sum(after >= m for m in milestones)
    return eta_min + (peak - eta_min) * (1 + math.cos(math.pi * min(after, t_max) / t_max)) / 2


class DeepCAM(Benchmark):
    """DeepLabV3+, LAMB/AdamW/Adam with the reference schedule, weighted
    cross-entropy, per-sample IoU; each replica reads a contiguous block."""

    facts = FACTS

    shard_style = "contiguous"

    def build_model(self, config: DeepCAMConfig) -> tf.keras.Model:
        return build_model(config.data.sample_shape, **vars(config.model))

    def mesh_model(self, config: DeepCAMConfig, split: tuple[int, int]) -> "DeepCAMMesh":
        from deepcam.mesh_model import DeepCAMMesh

        return DeepCAMMesh(config, split)

    def make_optimizer(self, config: DeepCAMConfig) -> tf.keras.optimizers.Optimizer:
        o = config.optimizer
        return AdamFamily(o.name, o.lr, tuple(o.betas), o.eps, o.weight_decay, o.max_grad_norm)

    def learning_rate(self, config: DeepCAMConfig, epoch: int, step: int, global_batch: int) -> float:
        s = config.lr_schedule
        return learning_rate_at(step, config.optimizer.lr, s.warmup_steps, s.warmup_factor, s.type, s.milestones,
                                s.decay_rate, s.t_max, s.eta_min)

    def hyperparameters(self, config: DeepCAMConfig, global_batch: int, ranks_per_sample: int) -> dict[str, Any]:
        o, s = config.optimizer, config.lr_schedule
        values = {
            # Batch norm statistics span the processes that share a sample.
            "batchnorm_group_size": ranks_per_sample,
            "gradient_accumulation_frequency": o.gradient_accumulation_frequency,
            keys.OPT_NAME: o.name,
            "opt_lr": o.lr,
            "opt_betas": list(o.betas),
            "opt_eps": o.eps,
            keys.OPT_WEIGHT_DECAY: o.weight_decay,
            "scheduler_type": s.type,
            "scheduler_lr_warmup_steps": s.warmup_steps,
            "scheduler_lr_warmup_factor": s.warmup_factor,
        }
        if o.name == "LAMB":
            values.update({"opt_bias_correction": True, "opt_grad_averaging": True,
                           "opt_max_grad_norm": o.max_grad_norm})
        if s.type == "multistep":
            values.update({"scheduler_milestones": list(s.milestones), "scheduler_decay_rate": s.decay_rate})
        else:
            values.update({"scheduler_t_max": s.t_max, "scheduler_eta_min": s.eta_min})
        return values

    def dataset_files(self, config: DeepCAMConfig, split: str) -> list[str]:
        d = config.data
        return data.list_files(d.data_dir, split, d.n_train if split == "train" else d.n_valid)

    def shared_files(self, config: DeepCAMConfig) -> list[str]:
        return [str(Path(config.data.data_dir) / data.STATS_FILE)]

    def check_file(self, config: DeepCAMConfig, path: str) -> None:
        data.read_sample(path, config.data.sample_shape)

    def write_raw(self, config: DeepCAMConfig, src: str, dst: Path) -> None:
        data.write_raw(dst, *data.read_sample(src, config.data.sample_shape))

    def pipelines(self, config: DeepCAMConfig, shard_index: int, n_shards: int, seed: int) -> Pipelines:
        d = config.data
        train_files = self.local_files(config, "train", shard_index, n_shards)
        valid_files = self.local_files(config, "validation", shard_index, n_shards)
        # The stats and one sample up front: a wrong channel count, shape or
        # missing labels is one clear line rather than a failure inside the
        # first training step (which reads the stats as it is traced).
        data.read_stats(d.data_dir, d.sample_shape[2])
        self.check_file(config, train_files[0])
        common = dict(sample_shape=d.sample_shape, batch_size=d.batch_size, shuffle=d.shuffle,
                      prefetch=d.prefetch, n_parallel_reads=d.n_parallel_reads, seed=seed + shard_index,
                      cache=d.cache)
        # Every replica runs the steps its smallest peer's block allows.
        steps = (d.n_train // n_shards) // d.batch_size
        return Pipelines(data.make_pipeline(train_files, training=True, steps=steps, **common),
                         data.make_pipeline(valid_files, training=False, **common), d.n_train, d.n_valid)

    def normalise(self, config: DeepCAMConfig, x: tf.Tensor) -> tf.Tensor:
        # Min-max scaling per channel with the dataset's stats.h5, read as the
        # step is traced and kept in the step as constants.
        minval, maxval = data.read_stats(config.data.data_dir, config.data.sample_shape[2])
        return (x - minval) * (1.0 / (maxval - minval))

    def loss(self, labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(weighted_cross_entropy(labels, predictions))

    def metric_sums(self, labels: tf.Tensor, predictions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scores = iou_per_sample(labels, tf.argmax(predictions, axis=-1, output_type=tf.int32))
        return tf.reduce_sum(scores), tf.cast(tf.size(scores), tf.float32)
