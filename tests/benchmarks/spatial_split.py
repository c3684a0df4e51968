"""Spatial split on this machine (a benchmark, not a test): the CosmoFlow
model trained unsplit and split 2x1 (each sample's depth halved between two
processes), on the same two cores: step time, samples/s and peak memory per
process. Each configuration is a real ``mpirun`` job running the harness's
trainer on fixed in-memory batches (the input pipeline is measured by
cosmoflow_throughput.py).

    .venv/bin/python tests/benchmarks/spatial_split.py [--size 128] [--batch 2] [--steps 6]

Peak memory is the process's maximum resident set; "activations" is that
peak minus the resident set after the model was built (before the first
step), i.e. what the training step itself needed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
CONFIGS = [  # name, layout, split, processes, threads per process
    ("Keras, unsplit", "single", None, 1, 2),
    ("Mesh TF, unsplit (1x1)", "spatial", "1x1", 1, 2),
    ("Mesh TF, split 2x1", "spatial", "2x1", 2, 1),
]


def rss_mib() -> float:
    """Current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(args: argparse.Namespace) -> None:
    """One rank: build the harness's trainer for the layout, time its steps."""
    from mlperf_hpc.runtime import configure_environment

    configure_environment()
    import numpy as np
    import tensorflow as tf

    from cosmoflow.benchmark import CosmoFlow
    from parallel.layouts import make_layout
    from parallel.topology import parse_split

    benchmark = CosmoFlow()
    config = benchmark.load_config(REPO / "cosmoflow" / "configs" / "cosmo.yaml", {
        "data.sample_shape": [args.size, args.size, args.size, 4], "data.batch_size": args.batch,
        "model.dropout": 0.0})
    layout = make_layout(args.layout, parse_split(args.split) if args.split else None)
    trainer = layout.make_trainer(benchmark, config, seed=1)
    trainer.set_learning_rate(1e-4)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 3, size=[args.batch, args.size, args.size, args.size, 4]).astype(np.float32))
    y = tf.constant(rng.uniform(-1, 1, size=[args.batch, 4]).astype(np.float32))
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
               "--batch", str(args.batch), "--steps", str(args.steps)] + (["--split", split] if split else [])
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode:
        sys.exit(f"{name} failed:\n{result.stderr[-3000:]}")
    ranks = [json.loads(line[7:]) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    step = max(r["step_s"] for r in ranks)
    return {"name": name, "processes": processes, "threads": threads, "step_s": step,
            "samples_s": args.batch / step, "peak_mib": max(r["peak_mib"] for r in ranks),
            "activations_mib": max(r["peak_mib"] - r["built_mib"] for r in ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="cube side")
    parser.add_argument("--batch", type=int, default=2, help="samples per step (per group)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(f"CosmoFlow reference model, {args.size}^3 x 4, batch {args.batch}, {args.steps} timed steps, "
          f"2 cores, oneDNN on")
    rows = [run(*config, args) for config in CONFIGS]
    print(f"{'configuration':26} {'procs x thr':>11} {'step s':>8} {'samples/s':>10} "
          f"{'peak MiB/proc':>14} {'step MiB/proc':>14}")
    for r in rows:
        print(f"{r['name']:26} {r['processes']:>5} x {r['threads']:<3} {r['step_s']:8.2f} {r['samples_s']:10.2f} "
              f"{r['peak_mib']:14.0f} {r['activations_mib']:14.0f}")
    unsplit, split = rows[1], rows[2]
    print(f"2x1 split vs unsplit (Mesh TF): step memory per process x{split['activations_mib'] / unsplit['activations_mib']:.2f}, "
          f"throughput x{split['samples_s'] / unsplit['samples_s']:.2f}")


if __name__ == "__main__":
    main()
