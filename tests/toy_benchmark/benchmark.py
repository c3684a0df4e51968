"""The toy benchmark as the driver trains it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from core.benchmark import SPLITS, Benchmark, Pipelines, SplitPipeline
from core.errors import HarnessError
from tests.toy_benchmark.facts import FACTS

WIDTH = 16


def synthesise(out: str | Path, n_train: int, n_valid: int, seed: int, options: dict, progress: bool) -> str:
    rng = np.random.default_rng(seed)
    for split, n in zip(SPLITS, (n_train, n_valid)):
        (Path(out) / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            np.save(Path(out) / split / f"{i:05d}.npy", rng.uniform(-1, 1, WIDTH).astype(np.float32))
    return f"wrote {n_train} + {n_valid} toy samples to {out}"


class Toy(Benchmark):
    facts = FACTS

    def build_model(self, config: Any) -> tf.keras.Model:
        return tf.keras.Sequential([tf.keras.Input([WIDTH]), tf.keras.layers.Dense(config.model.hidden, "relu"),
                                    tf.keras.layers.Dense(1)])

    def make_optimizer(self, config: Any) -> tf.keras.optimizers.Optimizer:
        return tf.keras.optimizers.SGD(config.model.lr, momentum=0.9)

    def learning_rate(self, config: Any, epoch: int, step: int, global_batch: int) -> float:
        return config.model.lr

    def hyperparameters(self, config: Any, global_batch: int, ranks_per_sample: int) -> dict[str, Any]:
        return {"opt_name": "sgd", "opt_base_learning_rate": config.model.lr}

    def loss(self, labels: tf.Tensor, predictions: tf.Tensor) -> tf.Tensor:
        return tf.reduce_mean(tf.square(labels - predictions))

    def metric_sums(self, labels: tf.Tensor, predictions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        errors = tf.abs(labels - predictions)
        return tf.reduce_sum(errors), tf.cast(tf.size(errors), tf.float32)

    def dataset_files(self, config: Any, split: str) -> list[str]:
        files = sorted(str(p) for p in (Path(config.data.data_dir) / split).glob("*.npy"))
        n = config.data.n_train if split == "train" else config.data.n_valid
        if len(files) < n:
            raise HarnessError(f"{config.data.data_dir}/{split} holds {len(files)} samples, the config asks for {n}")
        return files[:n]

    def check_file(self, config: Any, path: str) -> None:
        if np.load(path).shape != (WIDTH,):
            raise HarnessError(f"{path} does not hold {WIDTH} values")

    def pipelines(self, config: Any, shard_index: int, n_shards: int, seed: int) -> Pipelines:
        def split(name: str, training: bool) -> SplitPipeline:
            files = self.local_files(config, name, shard_index, n_shards)
            x = np.stack([np.load(f) for f in files])
            ds = tf.data.Dataset.from_tensor_slices((x, x.mean(axis=1, keepdims=True)))
            batch = config.data.batch_size
            if training:
                return SplitPipeline(ds.shuffle(len(files), seed).repeat().batch(batch, True), files,
                                     len(files) // batch)
            return SplitPipeline(ds.batch(batch).repeat(), files, -(-len(files) // batch))

        return Pipelines(split("train", True), split("validation", False), config.data.n_train, config.data.n_valid)
