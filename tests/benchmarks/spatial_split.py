"""Spatial split on this machine (a benchmark, not a test): a benchmark's
model trained unsplit and split 2x1 (each sample's first spatial axis halved
between two processes: CosmoFlow's depth, DeepCAM's height), on the same two
cores: step time, samples/s and peak memory per process. Each configuration
is a real ``mpirun`` job running the harness's trainer on fixed in-memory
batches (the input pipelines are measured by cosmoflow_throughput.py).

    .venv/bin/python tests/benchmarks/spatial_split.py [--size 128] [--batch 2] [--steps 6]
    .venv/bin/python tests/benchmarks/spatial_split.py --benchmark deepcam --config deepcam/configs/deepcam.yaml \
        --batch 1 --steps 2 --skip mesh1x1

CosmoFlow runs its full-size model at ``--size``^3; DeepCAM runs ``--config``
(default the mini config) at its sample shape.

Peak memory is the process's maximum resident set; "activations" is that
peak minus the resident set after the model was built (before the first
step), i.e. what the training step itself needed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
CONFIGS = {  # key: name, layout, split, processes, threads per process
    "keras": ("Keras, unsplit", "single", None, 1, 2),
    "mesh1x1": ("Mesh TF, unsplit (1x1)", "spatial", "1x1", 1, 2),
    "mesh2x1": ("Mesh TF, split 2x1", "spatial", "2x1", 2, 1),
}


def rss_mib() -> float:
    """Current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(args: argparse.Namespace) -> None:
    """One rank: build the harness's trainer for the layout, time its steps."""
    from core.runtime import configure_environment

    configure_environment()
    import numpy as np
    import tensorflow as tf

    from core.benchmark import get_benchmark
    from parallel import make_layout
    from parallel.topology import parse_split

    benchmark = get_benchmark(args.benchmark)
    rng = np.random.default_rng(0)
    if args.benchmark == "cosmoflow":
        config = benchmark.load_config(REPO / "cosmoflow" / "configs" / "cosmo.yaml", {
            "data.sample_shape": [args.size, args.size, args.size, 4], "data.batch_size": args.batch,
            "model.dropout": 0.0})
        x = rng.uniform(0, 3, size=[args.batch] + config.data.sample_shape)
        y = rng.uniform(-1, 1, size=[args.batch, 4]).astype(np.float32)
    else:
        config = benchmark.load_config(REPO / args.config, {"data.batch_size": args.batch})
        x = rng.uniform(0, 1, size=[args.batch] + config.data.sample_shape)
        y = rng.integers(0, 3, size=[args.batch] + config.data.sample_shape[:2]).astype(np.int32)
    x, y = tf.constant(x.astype(np.float32)), tf.constant(y)
    layout = make_layout(args.layout, parse_split(args.split) if args.split else (1, 1))
    trainer = layout.make_trainer(benchmark, config, seed=1)
    trainer.set_learning_rate(1e-4)
    built = rss_mib()
    trainer.train_step(x, y)                      # warm-up: graph optimisation, allocations
    layout.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step(x, y)
    layout.barrier()
    step = (time.perf_counter() - start) / args.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"rank": layout.topology.rank, "step_s": step, "peak_mib": peak, "built_mib": built}
    print("RESULT " + json.dumps(report), flush=True)


def run(name: str, layout: str, split: str | None, processes: int, threads: int, args) -> dict:
    env = {**os.environ, **MPI_ENV, "MLPERF_HPC_THREADS": str(threads)}
    command = ["mpirun", "-np", str(processes), "--oversubscribe", "--bind-to", "none", "-x", "MLPERF_HPC_THREADS",
               sys.executable, __file__, "--worker", "--layout", layout, "--size", str(args.size),
               "--benchmark", args.benchmark, "--config", args.config,
               "--batch", str(args.batch), "--steps", str(args.steps)] + (["--split", split] if split else [])
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode:
        sys.exit(f"{name} failed:\n{result.stderr[-3000:]}")
    # Ranks print at the same moment: mpirun may join their lines.
    ranks = [json.loads(found) for found in re.findall(r"RESULT (\{[^}]*\})", result.stdout)]
    step = max(r["step_s"] for r in ranks)
    return {"name": name, "processes": processes, "threads": threads, "step_s": step,
            "samples_s": args.batch / step, "peak_mib": max(r["peak_mib"] for r in ranks),
            "activations_mib": max(r["peak_mib"] - r["built_mib"] for r in ranks)}


def forward_flops(args: argparse.Namespace) -> float:
    """FLOPs of one sample's forward pass (a training step costs about 3x)."""
    from core.benchmark import get_benchmark
    from core.model_summary import forward_flops as model_flops

    benchmark = get_benchmark(args.benchmark)
    config = (benchmark.load_config(REPO / "cosmoflow" / "configs" / "cosmo.yaml",
                                    {"data.sample_shape": [args.size, args.size, args.size, 4]})
              if args.benchmark == "cosmoflow" else benchmark.load_config(REPO / args.config))
    return model_flops(benchmark.build_model(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="cosmoflow", choices=["cosmoflow", "deepcam"])
    parser.add_argument("--size", type=int, default=128, help="CosmoFlow: cube side")
    parser.add_argument("--config", default="deepcam/configs/mini.yaml", help="DeepCAM: config (sample shape, model)")
    parser.add_argument("--skip", default="", help="comma-separated configurations to leave out: "
                                                   + ", ".join(CONFIGS))
    parser.add_argument("--batch", type=int, default=2, help="samples per step (per group)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    if args.benchmark == "cosmoflow":
        what = f"CosmoFlow reference model, {args.size}^3 x 4"
    else:
        what = f"DeepCAM {args.config}"
    flops = forward_flops(args)
    print(f"{what}, {flops / 1e9:.1f} GFLOP forward per sample, batch {args.batch}, {args.steps} timed steps, "
          f"2 cores, oneDNN on")
    skipped = set(filter(None, args.skip.split(",")))
    rows = {key: run(*config, args) for key, config in CONFIGS.items() if key not in skipped}
    print(f"{'configuration':26} {'procs x thr':>11} {'step s':>8} {'samples/s':>10} {'GFLOP/s':>8} "
          f"{'peak MiB/proc':>14} {'step MiB/proc':>14}")
    for r in rows.values():
        print(f"{r['name']:26} {r['processes']:>5} x {r['threads']:<3} {r['step_s']:8.2f} {r['samples_s']:10.2f} "
              f"{3 * flops * r['samples_s'] / 1e9:8.0f} {r['peak_mib']:14.0f} {r['activations_mib']:14.0f}")
    if "mesh2x1" in rows:
        split = rows["mesh2x1"]
        for key in ("mesh1x1", "keras"):
            if key in rows:
                unsplit = rows[key]
                print(f"2x1 split vs {unsplit['name']}: step memory per process "
                      f"x{split['activations_mib'] / unsplit['activations_mib']:.2f}, "
                      f"throughput x{split['samples_s'] / unsplit['samples_s']:.2f}")


if __name__ == "__main__":
    main()
