"""CosmoFlow speed on this machine, side by side (a benchmark, not a test).

For each cube size: training samples/s of the harness (the real driver:
the reference's GZIP TFRecords streamed from disk, the same staged as raw
records first, ``data.stage_format: raw``, and the decoded shard cached in
memory after the first epoch, ``data.cache``; MLPerf logging, progress),
of a bare Keras ``fit`` on the same model and batch fed from memory, the
harness's epoch time with and without its evaluation, the achieved GFLOP/s
against a measured fp32 matmul rate, and the input pipeline's own
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

from parallel.layouts import SingleProcess  # noqa: E402

# Built before the first TensorFlow op (a layout chooses the GPU then).
LAYOUT = SingleProcess()

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


def harness_run(data_dir: Path, size: int, batch: int, n_train: int, n_valid: int, epochs: int,
                cache: bool, staged_raw: bool = False) -> tuple[float, float, float]:
    """(training samples/s, seconds an epoch trains, seconds it evaluates),
    over the epochs after the first (which pays for tracing and, cached,
    for reading)."""
    config = CosmoFlowConfig()
    config.data.data_dir = str(data_dir)
    config.data.sample_shape = [size, size, size, 4]
    config.data.n_train, config.data.n_valid, config.data.cache = n_train, n_valid, cache
    config.data.batch_size, config.data.n_epochs = batch, epochs
    config.train.target, config.train.seed = 0.0, 0
    with tempfile.TemporaryDirectory() as tmp:
        if staged_raw:
            config.data.stage_dir, config.data.stage_format = str(Path(tmp) / "stage"), "raw"
        result = train(CosmoFlow(), config, log_path=Path(tmp) / "bench.log", show_progress=False, layout=LAYOUT)
    steady = result.epochs[1:]
    train_s = sum(e.train_seconds for e in steady) / len(steady)
    return sum(e.samples for e in steady) / sum(e.train_seconds for e in steady), train_s, \
        sum(e.eval_seconds for e in steady) / len(steady)


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
                              shuffle=True, prefetch=4, n_parallel_reads=4, seed=0,
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
            n_train, n_valid = batch * args.steps, batch * max(1, args.steps // 4)   # validation: a quarter, as the mini config
            data_dir = generate(Path(tmp) / f"c{size}", size, n_train, n_valid, progress=False)
            pipeline = pipeline_samples_per_second(data_dir, size, batch, n_train)
            streamed, _, _ = harness_run(data_dir, size, batch, n_train, n_valid, args.epochs, cache=False)
            raw, _, _ = harness_run(data_dir, size, batch, n_train, n_valid, args.epochs, cache=False, staged_raw=True)
            cached, train_s, eval_s = harness_run(data_dir, size, batch, n_train, n_valid, args.epochs, cache=True)
            keras = keras_samples_per_second(size, batch, args.steps, args.epochs)
            gflops = cached * 3 * forward_flops(build_model([size, size, size, 4])) / 1e9
            rows.append((size, batch, streamed, raw, cached, keras, gflops, gflops / peak, train_s, eval_s, pipeline))
            print(f"size {size}: done", flush=True)

    print()
    print(f"{'size':>5} {'batch':>5} {'streamed/s':>10} {'raw/s':>7} {'cached/s':>9} {'keras/s':>8} "
          f"{'ratio':>17} {'GFLOP/s':>8} {'of matmul':>9} {'epoch s':>8} {'+eval s':>8} {'pipeline/s':>10}")
    for size, batch, streamed, raw, cached, keras, gflops, frac, train_s, eval_s, pipeline in rows:
        print(f"{size:>4}³ {batch:>5} {streamed:>10.2f} {raw:>7.2f} {cached:>9.2f} {keras:>8.2f} "
              f"{streamed / keras:>5.1%}/{raw / keras:>5.1%}/{cached / keras:>5.1%} {gflops:>8.0f} {frac:>9.0%} "
              f"{train_s:>8.2f} {train_s + eval_s:>8.2f} {pipeline:>10.1f}")
    print("ratio: harness / Keras, streamed (GZIP TFRecord) / staged raw / cached; epoch s: training only "
          "(cached); +eval s: with the evaluation")


if __name__ == "__main__":
    main()
