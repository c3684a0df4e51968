"""DeepCAM as a plug-in of the shared driver."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import tensorflow as tf
from mlperf_logging.mllog import constants as keys

from deepcam import data
from deepcam.config import DeepCAMConfig
from deepcam.model import build_model, check_shape
from deepcam.optimizers import KINDS, AdamFamily
from mlperf_hpc import staging
from mlperf_hpc.benchmark import Benchmark, Pipelines
from mlperf_hpc.config import SubmissionInfo, load_config
from mlperf_hpc.errors import HarnessError

# Class weights frequency^-0.125 of the real dataset, as the reference; the
# loss averages weighted pixel losses over pixels (not over the weights).
CLASS_WEIGHTS = (1.0017299, 2.6146112, 1.7164197)
SCHEDULERS = ("multistep", "cosine_annealing")


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


def iou_per_sample(labels: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """Mean over the 3 classes of TP / (TP + FP + FN) for each sample of
    [B, H, W] label maps; a class absent from both counts as 1."""
    scores = []
    for c in range(data.N_CLASSES):
        truth, guess = tf.equal(labels, c), tf.equal(predicted, c)
        tp = tf.reduce_sum(tf.cast(truth & guess, tf.float32), axis=[1, 2])
        union = tf.reduce_sum(tf.cast(truth | guess, tf.float32), axis=[1, 2])
        scores.append(tf.where(union > 0, tp / tf.maximum(union, 1.0), 1.0))
    return tf.add_n(scores) / data.N_CLASSES


def weighted_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-pixel cross-entropy times the class weight of the true class."""
    pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    return pixel * tf.gather(tf.constant(CLASS_WEIGHTS, tf.float32), labels)


class DeepCAM(Benchmark):
    name = "deepcam"
    metric_key = keys.EVAL_ACCURACY
    metric_name = "val IoU"
    lower_is_better = False

    def load_config(self, path: str | Path, overrides: dict[str, Any] | None = None) -> DeepCAMConfig:
        config = load_config(path, DeepCAMConfig, overrides)
        d, o, s = config.data, config.optimizer, config.lr_schedule
        if len(d.sample_shape) != 3:
            raise HarnessError(f"config {path}: data.sample_shape must be [H, W, C], got {d.sample_shape}")
        check_shape(*d.sample_shape[:2])
        if o.name not in KINDS:
            raise HarnessError(f"config {path}: optimizer.name '{o.name}' is not one of {', '.join(KINDS)}")
        if len(o.betas) != 2:
            raise HarnessError(f"config {path}: optimizer.betas needs two values, got {o.betas}")
        if o.gradient_accumulation_frequency != 1:
            raise HarnessError(f"config {path}: optimizer.gradient_accumulation_frequency="
                               f"{o.gradient_accumulation_frequency} is not supported; use 1 and a larger batch")
        if s.type not in SCHEDULERS:
            raise HarnessError(f"config {path}: lr_schedule.type '{s.type}' is not one of {', '.join(SCHEDULERS)}")
        if s.warmup_factor < 1.0:
            raise HarnessError(f"config {path}: lr_schedule.warmup_factor must be >= 1, got {s.warmup_factor}")
        return config

    def submission_info(self, config: DeepCAMConfig) -> SubmissionInfo:
        return config.mlperf

    def local_batch_size(self, config: DeepCAMConfig) -> int:
        return config.data.batch_size

    def max_epochs(self, config: DeepCAMConfig) -> int:
        return config.data.n_epochs

    def target(self, config: DeepCAMConfig) -> float:
        return config.train.target_iou

    def seed(self, config: DeepCAMConfig) -> int | None:
        return config.train.seed

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

    def _files(self, config: DeepCAMConfig, split: str, shard_index: int, n_shards: int) -> list[str]:
        d = config.data
        n = d.n_train if split == "train" else d.n_valid
        return data.shard(data.list_files(d.data_dir, split, n), n_shards, shard_index)

    def _local_files(self, config: DeepCAMConfig, split: str, shard_index: int, n_shards: int) -> list[str]:
        files = self._files(config, split, shard_index, n_shards)
        if config.data.stage_dir:
            files = [str(staging.staged_path(f, config.data.stage_dir)) for f in files]
        return files

    def stage(self, config: DeepCAMConfig, shard_index: int, n_shards: int) -> None:
        if config.data.stage_dir:
            for split in data.SPLITS:
                staging.stage(self._files(config, split, shard_index, n_shards), config.data.stage_dir)

    def pipelines(self, config: DeepCAMConfig, shard_index: int, n_shards: int, seed: int) -> Pipelines:
        d = config.data
        # Every replica runs the steps its smallest peer's block allows.
        steps = (d.n_train // n_shards) // d.batch_size
        if steps < 1:
            raise HarnessError(f"data.n_train={d.n_train} gives no full batch of {d.batch_size} on each of "
                               f"{n_shards} replicas: raise n_train or lower batch_size")
        train_files = self._local_files(config, "train", shard_index, n_shards)
        valid_files = self._local_files(config, "validation", shard_index, n_shards)
        stats = data.read_stats(d.data_dir, d.sample_shape[2])
        # One sample up front: a wrong shape or missing labels is one clear
        # line rather than a failure inside the first training step.
        data.read_sample(train_files[0], d.sample_shape)
        common = dict(sample_shape=d.sample_shape, stats=stats, batch_size=d.batch_size, shuffle=d.shuffle,
                      prefetch=d.prefetch, n_parallel_reads=d.n_parallel_reads, seed=seed + shard_index)
        train = data.make_pipeline(train_files, training=True, steps=steps, **common)
        valid = data.make_pipeline(valid_files, training=False, **common)
        return Pipelines(train.dataset, valid.dataset, train.steps, valid.steps, d.n_train, d.n_valid)

    def explain_data_error(self, config: DeepCAMConfig, shard_index: int, n_shards: int,
                           error: Exception) -> Exception:
        d = config.data
        for split in data.SPLITS:
            data.find_bad_file(self._local_files(config, split, shard_index, n_shards), d.sample_shape)
        reason = str(error).strip().splitlines()[0][:200]
        return HarnessError(f"input pipeline failed reading {d.data_dir} ({reason}); no single bad file found")

    def loss(self, labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(weighted_cross_entropy(labels, predictions))

    def metric_sums(self, labels: tf.Tensor, predictions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scores = iou_per_sample(labels, tf.argmax(predictions, axis=-1, output_type=tf.int32))
        return tf.reduce_sum(scores), tf.cast(tf.size(scores), tf.float32)
