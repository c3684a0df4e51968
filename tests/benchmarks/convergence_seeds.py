"""Epochs to target over many seeds, per layout (a script, not a test: ten
runs of each are long). Each run is the real command line (``mlperf-hpc
train``, under mpirun for the parallel layouts) on the mini config and its
dataset; the table gives, per layout, the runs that reached the target and
the epochs they took (mean, min, max), and the time to train; --json keeps
every run with its validation error per epoch.

    .venv/bin/python tests/benchmarks/convergence_seeds.py [--benchmark cosmoflow] [--seeds 10]
        [--layouts single,data,hybrid:2x1] [--set lr_schedule.scaling=sqrt ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
# layout -> processes mpirun starts (every process one thread on the 2 cores)
PROCESSES = {"single": 1, "data": 2, "hybrid:2x1": 4}


def run(benchmark: str, layout: str, seed: int, data: Path, settings: list[str], log: Path) -> dict:
    name, _, split = layout.partition(":")
    processes = PROCESSES[layout]
    command = [sys.executable, "-m", "mlperf_hpc.cli", "train", benchmark, "--layout", name, "--data", str(data),
               "--seed", str(seed), "--log", str(log)] + (["--spatial", split] if split else [])
    for item in settings:
        command += ["--set", item]
    env = {**os.environ, **MPI_ENV}
    if processes > 1:
        threads = max(1, 2 // processes)
        env["MLPERF_HPC_THREADS"] = str(threads)
        command = ["mpirun", "-np", str(processes), "--oversubscribe", "--bind-to", "none",
                   "-x", "MLPERF_HPC_THREADS"] + command
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    records = [json.loads(line.split(":::MLLOG", 1)[1]) for line in log.read_text().splitlines()] if log.exists() else []
    status = next((r["metadata"]["status"] for r in records if r["key"] == "run_stop"), "none")
    starts = [r["time_ms"] for r in records if r["key"] == "run_start"]
    stops = [r["time_ms"] for r in records if r["key"] == "run_stop"]
    epochs = sum(1 for r in records if r["key"] == "epoch_stop")
    curve = [round(r["value"], 4) for r in records if r["key"] == "eval_error"]
    return {"layout": layout, "seed": seed, "exit": result.returncode, "status": status, "epochs": epochs,
            "eval_error": curve,
            "minutes": (stops[0] - starts[0]) / 60000 if starts and stops else None,
            "wall_s": time.monotonic() - start, "error": result.stderr.strip().splitlines()[-1:] if result.returncode
            not in (0, 3) else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="cosmoflow")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--layouts", default="single,data,hybrid:2x1")
    parser.add_argument("--data", help="the mini dataset (default: synthesised once into a temporary directory)")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--json", help="also write every run's record here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            subprocess.run([sys.executable, "-m", "mlperf_hpc.cli", "data", "synth", args.benchmark, "--out",
                            str(data)], check=True, cwd=REPO)
        runs = []
        for layout in args.layouts.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                runs.append(run(args.benchmark, layout, seed, data, args.set, Path(tmp) / f"{layout}-{seed}.log"))
                r = runs[-1]
                print(f"{layout:12} seed {seed}: {r['status']:8} in {r['epochs']:3} epochs, "
                      f"{r['minutes'] or 0:.2f} min {r['error']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    print(f"\n{args.benchmark} mini, {args.seeds} seeds from {args.first_seed}; overrides: {args.set or 'none'}")
    print(f"{'layout':12} {'reached':>8} {'epochs mean':>12} {'min':>4} {'max':>4} {'TTT min mean':>13}")
    for layout in args.layouts.split(","):
        mine = [r for r in runs if r["layout"] == layout]
        good = [r for r in mine if r["status"] == "success"]
        epochs = [r["epochs"] for r in good] or [0]
        ttt = [r["minutes"] for r in good] or [0.0]
        print(f"{layout:12} {len(good):>4}/{len(mine):<3} {statistics.mean(epochs):>12.1f} {min(epochs):>4} "
              f"{max(epochs):>4} {statistics.mean(ttt):>13.2f}")


if __name__ == "__main__":
    main()
