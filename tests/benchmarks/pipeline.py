"""Input-pipeline speed per format and size, and DeepCAM's atrous layers
(a benchmark, not a test).

Per benchmark, size and format, each in a process pinned to 1 and then 2
cores (TensorFlow's pools sized to them):

- samples/s the host pipeline delivers (shuffled, batched, prefetched;
  files in the page cache, so this is decoding, not disk), per core; and
  again with the normalisation mapped on the host, as every pipeline did
  before it moved into the training step ("host-normalised");
- the training step's seconds per batch on the same cores, and the share
  of it the pipeline needs to produce a batch ("busy");
- staging's conversion rate into the raw format (1 core);
- bytes per sample as the pipeline holds it, and the process's measured
  memory growth per sample in flight.

Then DeepCAM's ASPP atrous convolutions (2048 -> 256 channels, rates 6, 12,
18, forward and backward) per feature-map size: Keras' dilated Conv2D over
the padded map (the model's layer before), the harness's AtrousConv2D, and
with ``--torch-python`` PyTorch's Conv2d(padding=rate, dilation=rate), the
reference's layer; and DeepCAM's training step with either layer beside a
bare Keras ``train_on_batch`` of the same model.

    .venv/bin/python tests/benchmarks/pipeline.py [--cosmoflow-sizes 128] \
        [--deepcam-shapes 768x1152] [--torch-python /path/to/python-with-torch]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

COSMOFLOW_FORMATS = {            # name -> (on-disk format, compression, staged as raw)
    "tfrecord-gzip (reference)": ("tfrecord", "GZIP", False),
    "tfrecord": ("tfrecord", None, False),
    "hdf5-gzip1": ("hdf5", None, False),
    "raw (staged from tfrecord-gzip)": ("tfrecord", "GZIP", True),
}
DEEPCAM_FORMATS = {
    "hdf5 (reference)": False,
    "raw (staged from hdf5)": True,
}
MAP_SIZES = [(6, 9), (12, 18), (24, 36), (48, 72)]
ATROUS_RATES = (6, 12, 18)


# --- workers: each runs pinned in its own process --------------------------------

def _pin(cores: int) -> None:
    """This process on its first ``cores`` cores, TensorFlow's pools sized to them."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    os.environ["MLPERF_HPC_THREADS"] = str(cores)
    from core.runtime import configure_environment
    configure_environment()


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _config(task: dict):
    from core.benchmark import get_benchmark

    benchmark = get_benchmark(task["benchmark"])
    config = benchmark.load_config(REPO / task["config"], task["overrides"])
    for dotted, value in task["overrides"].items():
        if value is None:           # an override of None means "not given"; here it means null
            section, key = dotted.split(".")
            setattr(getattr(config, section), key, None)
    return benchmark, config


def pipeline_worker(task: dict) -> dict:
    """Samples/s of the training pipeline, and memory held per sample in flight."""
    import tensorflow as tf

    benchmark, config = _config(task)
    if task["stage"]:
        start = time.perf_counter()
        benchmark.stage(config, 0, 1)
        staging_seconds = time.perf_counter() - start
    baseline = _rss_bytes()
    dataset = benchmark.pipelines(config, 0, 1, seed=0).train.dataset
    if task["host_normalise"]:
        dataset = dataset.map(lambda x, y: (benchmark.normalise(config, x), y),
                              num_parallel_calls=tf.data.AUTOTUNE)
    batches = iter(dataset)
    x, _ = next(batches)                                    # warm the pools and the page cache
    for _ in range(task["warmup"]):
        next(batches)
    start = time.perf_counter()
    for _ in range(task["batches"]):
        x, _ = next(batches)
    seconds = time.perf_counter() - start
    in_flight = config.data.batch_size * (config.data.prefetch + 1)
    return {"samples_per_second": task["batches"] * config.data.batch_size / seconds,
            "sample_bytes": x[0].numpy().nbytes,
            "rss_per_sample_in_flight": (_rss_bytes() - baseline) / in_flight,
            "staging_seconds": staging_seconds if task["stage"] else None}


def staging_worker(task: dict) -> dict:
    """Seconds to stage (convert) the training and validation shards."""
    benchmark, config = _config(task)
    start = time.perf_counter()
    benchmark.stage(config, 0, 1)
    return {"seconds": time.perf_counter() - start}


def step_worker(task: dict) -> dict:
    """Median seconds of the harness's training step (raw batch in, the
    normalisation its first operation) on one in-memory batch, and of a bare
    Keras ``train_on_batch`` of the same model on the normalised batch;
    ``keras_dilated`` builds the ASPP with Keras' dilated Conv2D instead."""
    from parallel.layouts import KerasTrainer, SingleProcess

    layout = SingleProcess()
    import numpy as np
    import tensorflow as tf

    if task.get("keras_dilated"):
        from deepcam import model as deepcam_model

        def keras_dilated(filters, rate, name):
            return lambda x: tf.keras.layers.Conv2D(filters, 3, dilation_rate=rate, use_bias=False, name=name)(
                tf.keras.layers.ZeroPadding2D(rate)(x))
        deepcam_model.AtrousConv2D = keras_dilated
    benchmark, config = _config(task)
    shape = [config.data.batch_size] + list(config.data.sample_shape)
    rng = np.random.default_rng(0)
    if task["benchmark"] == "cosmoflow":
        x = tf.constant(rng.integers(0, 100, shape), tf.int16)
        y = tf.constant(rng.uniform(-1, 1, (shape[0], 4)), tf.float32)
    else:
        x = tf.constant(rng.uniform(0, 1, shape), tf.float32)
        y = tf.constant(rng.integers(0, 3, shape[:3]), tf.int32)
    trainer = KerasTrainer(benchmark, config, layout)

    def median(step) -> float:
        step()
        times = []
        for _ in range(task["steps"]):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    result = {"harness": median(lambda: float(trainer.train_step(x, y)))}
    if task.get("bare_keras"):
        model = trainer.model
        model.compile(optimizer=benchmark.make_optimizer(config), loss=benchmark.loss)
        normalised = benchmark.normalise(config, x)
        result["bare_keras"] = median(lambda: model.train_on_batch(normalised, y))
    return result


def atrous_worker(task: dict) -> dict:
    """Median seconds of the three ASPP atrous branches forward and backward,
    per map size, with Keras' dilated Conv2D and with AtrousConv2D."""
    import tensorflow as tf

    from deepcam.model import AtrousConv2D

    results = {}
    for height, width in MAP_SIZES:
        batch = task["batch"][f"{height}x{width}"]
        x = tf.random.normal([batch, height, width, task["channels"]])
        for kind in ("keras", "harness"):
            if kind == "keras":
                convs = [tf.keras.Sequential([tf.keras.layers.ZeroPadding2D(r),
                                              tf.keras.layers.Conv2D(256, 3, dilation_rate=r, use_bias=False)])
                         for r in ATROUS_RATES]
            else:
                convs = [AtrousConv2D(256, r) for r in ATROUS_RATES]

            @tf.function
            def step(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.add_n([tf.reduce_sum(conv(x)) for conv in convs])
                weights = [w for conv in convs for w in conv.trainable_weights]
                return tape.gradient(loss, [x] + weights)[0]

            step(x).numpy()
            times = []
            for _ in range(task["repeats"]):
                start = time.perf_counter()
                step(x).numpy()
                times.append(time.perf_counter() - start)
            results[f"{height}x{width} {kind}"] = statistics.median(times)
    return results


TORCH_ATROUS = """
import json, statistics, sys, time, torch
task = json.loads(sys.argv[1])
torch.set_num_threads(task["cores"])
out = {}
for height, width in task["sizes"]:
    batch = task["batch"][f"{height}x{width}"]
    x = torch.randn(batch, task["channels"], height, width, requires_grad=True)
    convs = [torch.nn.Conv2d(task["channels"], 256, 3, padding=r, dilation=r, bias=False) for r in task["rates"]]
    def step():
        loss = sum(c(x).sum() for c in convs)
        loss.backward()
    step()
    times = []
    for _ in range(task["repeats"]):
        start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
    out[f"{height}x{width} torch"] = statistics.median(times)
print(json.dumps(out))
"""

WORKERS = {"pipeline": pipeline_worker, "staging": staging_worker, "step": step_worker, "atrous": atrous_worker}


def run_worker(kind: str, cores: int, task: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", kind, "--cores", str(cores), json.dumps(task)],
                          capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the driver ------------------------------------------------------------------

def _print_table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n{title}\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row) + " |")


def cosmoflow(size: int, n_samples: int, batches: int, root: Path, step_steps: int) -> None:
    from cosmoflow.synth import generate

    rows, staging_rows = [], []
    steps = {cores: run_worker("step", cores, {
        "benchmark": "cosmoflow", "config": "cosmoflow/configs/cosmo.yaml", "steps": step_steps,
        "overrides": {"data.sample_shape": [size, size, size, 4], "data.batch_size": 2}})["harness"]
        for cores in (1, 2)}
    for name, (fmt, compression, staged) in COSMOFLOW_FORMATS.items():
        data_dir = root / f"cosmoflow-{size}-{fmt}-{compression}"
        if not data_dir.exists():
            print(f"writing {n_samples} {size}^3 samples as {fmt} {compression or ''}", file=sys.stderr)
            generate(data_dir, size, n_samples, 2, fmt, 1, 0, compression, progress=False)
        overrides = {"data.data_dir": str(data_dir), "data.format": fmt, "data.compression": compression,
                     "data.sample_shape": [size, size, size, 4], "data.n_train": n_samples, "data.n_valid": 2,
                     "data.batch_size": 2, "data.cache": False, "data.prefetch": 4, "data.n_parallel_reads": 4}
        if staged:
            overrides.update({"data.stage_dir": str(root / "stage"), "data.stage_format": "raw"})
            shutil.rmtree(root / "stage", ignore_errors=True)        # staged afresh, not reused
            seconds = run_worker("staging", 1, {"benchmark": "cosmoflow", "config": "cosmoflow/configs/mini.yaml",
                                                "overrides": overrides})["seconds"]
            staging_rows.append([f"cosmoflow {size}^3", name, n_samples + 2, seconds, (n_samples + 2) / seconds])
        for host_normalise in ((False, True) if not staged else (False,)):
            measured = {}
            for cores in (1, 2):
                measured[cores] = run_worker("pipeline", cores, {
                    "benchmark": "cosmoflow", "config": "cosmoflow/configs/mini.yaml", "overrides": overrides,
                    "stage": False, "host_normalise": host_normalise, "warmup": 2, "batches": batches})
            rate1, rate2 = measured[1]["samples_per_second"], measured[2]["samples_per_second"]
            rows.append([f"{size}^3", name + (", host-normalised" if host_normalise else ""), rate1, rate2 / 2,
                         2 / rate2 / steps[2], measured[2]["sample_bytes"] / 2 ** 20,
                         measured[2]["rss_per_sample_in_flight"] / 2 ** 20])
    _print_table(f"CosmoFlow {size}^3, batch 2 (training step: {steps[1]:.2f} s on 1 core, {steps[2]:.2f} s on 2)",
                 ["size", "format", "samples/s, 1 core", "samples/s per core, 2 cores", "busy share of a step, 2 cores",
                  "MiB per sample held", "MiB RSS per sample in flight"], rows)
    if staging_rows:
        _print_table("Staging into the raw format (1 core)", ["data", "format", "samples", "seconds", "samples/s"],
                     staging_rows)


def deepcam(shape: tuple[int, int], n_samples: int, batches: int, root: Path) -> None:
    from deepcam.synth import generate

    height, width = shape
    data_dir = root / f"deepcam-{height}x{width}"
    if not data_dir.exists():
        print(f"writing {n_samples} {height}x{width}x16 samples", file=sys.stderr)
        generate(data_dir, height, width, n_samples, 2, progress=False)
    rows, staging_rows = [], []
    for name, staged in DEEPCAM_FORMATS.items():
        overrides = {"data.data_dir": str(data_dir), "data.sample_shape": [height, width, 16],
                     "data.n_train": n_samples, "data.n_valid": 2, "data.batch_size": 1, "data.cache": False,
                     "data.prefetch": 2, "data.n_parallel_reads": 2}
        if staged:
            overrides.update({"data.stage_dir": str(root / "stage"), "data.stage_format": "raw"})
            shutil.rmtree(root / "stage", ignore_errors=True)
            seconds = run_worker("staging", 1, {"benchmark": "deepcam", "config": "deepcam/configs/mini.yaml",
                                                "overrides": overrides})["seconds"]
            staging_rows.append([f"deepcam {height}x{width}", name, n_samples + 2, seconds, (n_samples + 2) / seconds])
        for host_normalise in ((False, True) if not staged else (False,)):
            measured = {cores: run_worker("pipeline", cores, {
                "benchmark": "deepcam", "config": "deepcam/configs/mini.yaml", "overrides": overrides,
                "stage": False, "host_normalise": host_normalise, "warmup": 2, "batches": batches})
                for cores in (1, 2)}
            rows.append([f"{height}x{width}", name + (", host-normalised" if host_normalise else ""),
                         measured[1]["samples_per_second"], measured[2]["samples_per_second"] / 2,
                         measured[2]["sample_bytes"] / 2 ** 20, measured[2]["rss_per_sample_in_flight"] / 2 ** 20])
    _print_table(f"DeepCAM {height}x{width}x16, batch 1",
                 ["size", "format", "samples/s, 1 core", "samples/s per core, 2 cores", "MiB per sample held",
                  "MiB RSS per sample in flight"], rows)
    if staging_rows:
        _print_table("Staging into the raw format (1 core)", ["data", "format", "samples", "seconds", "samples/s"],
                     staging_rows)


def atrous(torch_python: str | None, repeats: int) -> None:
    # Batches as the full-width model meets these maps: 96x144 fields at
    # batch 8 give 6x9, full-size fields at batch 1 give 48x72.
    task = {"channels": 2048, "repeats": repeats, "sizes": MAP_SIZES, "rates": list(ATROUS_RATES),
            "batch": {"6x9": 8, "12x18": 4, "24x36": 2, "48x72": 1}, "cores": 2}
    times = run_worker("atrous", 2, task)
    if torch_python:
        done = subprocess.run(["taskset", "-c", ",".join(map(str, sorted(os.sched_getaffinity(0))[:2])),
                               torch_python, "-c", TORCH_ATROUS, json.dumps(task)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the PyTorch run failed:\n{done.stderr[-2000:]}")
        times.update(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = []
    for height, width in MAP_SIZES:
        key = f"{height}x{width}"
        torch_seconds = times.get(f"{key} torch")
        rows.append([key, task["batch"][key], times[f"{key} keras"], times[f"{key} harness"],
                     torch_seconds if torch_seconds else "-",
                     times[f"{key} harness"] / torch_seconds if torch_seconds else "-"])
    _print_table("DeepCAM ASPP atrous branches (2048 -> 3 x 256, rates 6/12/18), forward + backward, 2 cores, "
                 "median seconds", ["map", "batch", "Keras dilated Conv2D (before)", "AtrousConv2D (after)",
                                    "PyTorch Conv2d (reference)", "after / reference"], rows)


def deepcam_steps(shapes: list[tuple[tuple[int, int], int]], steps: int, root: Path) -> None:
    import numpy as np

    from deepcam.data import write_stats
    from deepcam.facts import STATS_FILE

    # The step reads the dataset's stats as it is traced.
    (root / "stats").mkdir(exist_ok=True)
    write_stats(root / "stats" / STATS_FILE, np.zeros(16), np.ones(16))
    rows = []
    for (height, width), batch in shapes:
        overrides = {"data.sample_shape": [height, width, 16], "data.batch_size": batch,
                     "data.data_dir": str(root / "stats")}
        task = {"benchmark": "deepcam", "config": "deepcam/configs/deepcam.yaml", "overrides": overrides,
                "steps": steps}
        before = run_worker("step", 2, {**task, "keras_dilated": True})
        after = run_worker("step", 2, {**task, "bare_keras": True})
        rows.append([f"{height}x{width}", batch, before["harness"], after["harness"], after["bare_keras"],
                     after["harness"] / after["bare_keras"]])
    _print_table("DeepCAM full-width model, training step, 2 cores, median seconds",
                 ["fields", "batch", "harness, Keras dilated ASPP (before)", "harness, AtrousConv2D (after)",
                  "bare Keras train_on_batch (after)", "harness / bare"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--cores", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("task", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--cosmoflow-sizes", default="128", help="cube sides, comma-separated")
    parser.add_argument("--cosmoflow-samples", type=int, default=32)
    parser.add_argument("--deepcam-shapes", default="768x1152", help="HxW, comma-separated")
    parser.add_argument("--deepcam-samples", type=int, default=12)
    parser.add_argument("--batches", type=int, default=32, help="timed batches per pipeline")
    parser.add_argument("--step-shapes", default="96x144:8,768x1152:1",
                        help="DeepCAM training-step fields and batches (HxW:B, comma-separated; '' to skip)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument("--repeats", type=int, default=5, help="timed atrous passes")
    parser.add_argument("--torch-python", help="a Python with PyTorch, for the reference's atrous layer")
    parser.add_argument("--data", help="where to keep the generated data (default: a temporary directory)")
    args = parser.parse_args()
    if args.worker:
        _pin(args.cores)
        print(json.dumps(WORKERS[args.worker](json.loads(args.task))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data or tmp)
        for size in filter(None, args.cosmoflow_sizes.split(",")):
            cosmoflow(int(size), args.cosmoflow_samples, args.batches, root, args.steps)
        for shape in filter(None, args.deepcam_shapes.split(",")):
            height, width = map(int, shape.split("x"))
            deepcam((height, width), args.deepcam_samples, args.batches, root)
        atrous(args.torch_python, args.repeats)
        step_shapes = []
        for item in filter(None, args.step_shapes.split(",")):
            fields, batch = item.split(":")
            step_shapes.append((tuple(map(int, fields.split("x"))), int(batch)))
        if step_shapes:
            deepcam_steps(step_shapes, args.steps, root)


if __name__ == "__main__":
    main()
