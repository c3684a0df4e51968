"""CosmoFlow speed on this machine, side by side (a benchmark, not a test).

For each cube size: training samples/s of the harness (the real driver:
TFRecord pipeline, MLPerf logging, progress, eval excluded), of a bare Keras
``fit`` on the same model and batch fed from memory, the achieved GFLOP/s of
the harness against a measured fp32 matmul rate, and the input pipeline's own
samples/s.

    .venv/bin/python tests/benchmarks/cosmoflow_throughput.py [--sizes 64,128] [--batch 8,2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from core.runtime import configure_environment  # noqa: E402

THREADS = configure_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cosmoflow import data  # noqa: E402
from cosmoflow.benchmark import CosmoFlow  # noqa: E402
from cosmoflow.config import CosmoFlowConfig  # noqa: E402
from core.model_summary import forward_flops  # noqa: E402
from cosmoflow.model import build_model  # noqa: E402
from cosmoflow.synth import generate  # noqa: E402
from mlperf_hpc.driver import train  # noqa: E402


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    tf.linalg.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        c = tf.linalg.matmul(a, b)
    c.numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def harness_samples_per_second(data_dir: Path, size: int, batch: int, n_train: int, epochs: int) -> float:
    config = CosmoFlowConfig()
    config.data.data_dir = str(data_dir)
    config.data.sample_shape = [size, size, size, 4]
    config.data.n_train, config.data.n_valid = n_train, batch
    config.data.batch_size, config.data.n_epochs = batch, epochs
    config.train.target, config.train.seed = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        result = train(CosmoFlow(), config, log_path=Path(tmp) / "bench.log", show_progress=False)
    steady = result.epochs[1:]  # the first epoch pays for tracing
    return sum(e.samples for e in steady) / sum(e.train_seconds for e in steady)


def keras_samples_per_second(size: int, batch: int, steps: int, epochs: int) -> float:
    tf.keras.utils.set_random_seed(0)
    model = build_model([size, size, size, 4])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.001, momentum=0.9), loss="mse")
    x = tf.random.uniform([batch, size, size, size, 4], 0, 4)
    y = tf.random.uniform([batch, 4], -1, 1)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    times = []

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(ds, steps_per_epoch=steps, epochs=epochs, verbose=0, callbacks=[Timer()])
    return steps * batch * (epochs - 1) / sum(times[1:])


def pipeline_samples_per_second(data_dir: Path, size: int, batch: int, n_train: int, passes: int = 3) -> float:
    files = data.list_files(data_dir, "train", "tfrecord", n_train, 1)
    pipe = data.make_pipeline(files, "tfrecord", "GZIP", [size, size, size, 4], batch, training=True,
                              shuffle=True, apply_log=True, prefetch=4, n_parallel_reads=4, seed=0,
                              samples_per_file=1)
    it = iter(pipe.dataset)
    next(it)
    start = time.perf_counter()
    steps = pipe.steps * passes
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128")
    parser.add_argument("--batch", default="8,2", help="batch per size")
    parser.add_argument("--steps", type=int, default=6, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (the first is discarded)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batch.split(",")]

    peak = matmul_gflops()
    print(f"threads {THREADS}, TF_ENABLE_ONEDNN_OPTS={__import__('os').environ['TF_ENABLE_ONEDNN_OPTS']}, "
          f"fp32 matmul 4096^2: {peak:.0f} GFLOP/s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, batch in zip(sizes, batches):
            n_train = batch * args.steps
            data_dir = generate(Path(tmp) / f"c{size}", size, n_train, batch, progress=False)
            pipeline = pipeline_samples_per_second(data_dir, size, batch, n_train)
            harness = harness_samples_per_second(data_dir, size, batch, n_train, args.epochs)
            keras = keras_samples_per_second(size, batch, args.steps, args.epochs)
            gflops = harness * 3 * forward_flops(build_model([size, size, size, 4])) / 1e9
            rows.append((size, batch, harness, keras, harness / keras, gflops, gflops / peak, pipeline))
            print(f"size {size}: done", flush=True)

    print()
    print(f"{'size':>5} {'batch':>5} {'harness/s':>10} {'keras/s':>9} {'ratio':>6} {'GFLOP/s':>8} "
          f"{'of matmul':>9} {'pipeline/s':>10}")
    for size, batch, harness, keras, ratio, gflops, frac, pipeline in rows:
        print(f"{size:>4}³ {batch:>5} {harness:>10.2f} {keras:>9.2f} {ratio:>6.1%} {gflops:>8.0f} "
              f"{frac:>9.0%} {pipeline:>10.1f}")


if __name__ == "__main__":
    main()
