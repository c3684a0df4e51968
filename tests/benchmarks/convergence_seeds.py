"""Epochs to target over many seeds, per layout (a script, not a test: ten
runs of each are long). Each run is the real command line (``mlperf-hpc
train``, under mpirun for the parallel layouts) on the mini config and its
dataset; the table gives, per layout, the runs that reached the target, the
epochs they took (min, median, max), the time to train, and the runs the
divergence guard stopped (exit 4); --json keeps every run with its
validation metric per epoch (CosmoFlow's eval_error, DeepCAM's
eval_accuracy), rewritten as each run ends, so a sweep that is stopped
keeps the runs it finished (an existing file is never replaced).

Layouts: ``single``; ``data`` or ``data:N`` (N data-parallel ranks, 2 by
default); ``spatial:AxB`` (one sample split A x B); ``hybrid:AxB`` (2
groups, each split A x B).

    .venv/bin/python tests/benchmarks/convergence_seeds.py [--benchmark cosmoflow] [--seeds 10]
        [--first-seed 100] [--layouts single,data,data:4,spatial:2x1,hybrid:2x1] [--set key=value ...]
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
sys.path.insert(0, str(REPO))

from core.benchmark import get_facts  # noqa: E402  (the facts import no TensorFlow)
from core.errors import HarnessError  # noqa: E402

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
GUARD_EXIT = 4          # the divergence guard's exit status ("target missed" is 3)


def processes(layout: str) -> int:
    """How many processes mpirun starts for ``layout`` (see the docstring)."""
    name, _, arg = layout.partition(":")
    if name == "single":
        return 1
    if name == "data":
        return int(arg or 2)
    blocks = 1
    for part in arg.split("x"):
        blocks *= int(part)
    return blocks if name == "spatial" else 2 * blocks


def run(benchmark: str, metric: str, layout: str, seed: int, data: Path, settings: list[str], log: Path) -> dict:
    name, _, arg = layout.partition(":")
    n_processes = processes(layout)
    command = [sys.executable, "-m", "mlperf_hpc.cli", "train", benchmark, "--layout", name, "--data", str(data),
               "--seed", str(seed), "--log", str(log)] + (["--spatial", arg] if name in ("spatial", "hybrid") else [])
    for item in settings:
        command += ["--set", item]
    env = {**os.environ, **MPI_ENV}
    if n_processes > 1:
        env["MLPERF_HPC_THREADS"] = str(max(1, 2 // n_processes))
        command = ["mpirun", "-np", str(n_processes), "--oversubscribe", "--bind-to", "none",
                   "-x", "MLPERF_HPC_THREADS"] + command
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    records = [json.loads(line.split(":::MLLOG", 1)[1]) for line in log.read_text().splitlines()] if log.exists() else []
    status = next((r["metadata"]["status"] for r in records if r["key"] == "run_stop"), "none")
    starts = [r["time_ms"] for r in records if r["key"] == "run_start"]
    stops = [r["time_ms"] for r in records if r["key"] == "run_stop"]
    epochs = sum(1 for r in records if r["key"] == "epoch_stop")
    curve = [round(r["value"], 4) for r in records if r["key"] == metric]
    return {"layout": layout, "seed": seed, "exit": result.returncode, "status": status, "epochs": epochs,
            metric: curve,
            "minutes": (stops[0] - starts[0]) / 60000 if starts and stops else None,
            "wall_s": time.monotonic() - start, "error": result.stderr.strip().splitlines()[-1:] if result.returncode
            not in (0, 3) else []}


def keep(runs: list[dict], record: Path) -> None:
    """Write ``runs`` to ``record`` whole or not at all (a reader never sees half a file)."""
    partial = record.with_name(record.name + ".partial")
    partial.write_text(json.dumps(runs, indent=1))
    os.replace(partial, record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="cosmoflow")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--layouts", default="single,data,hybrid:2x1")
    parser.add_argument("--data", help="the mini dataset (default: synthesised once into a temporary directory)")
    parser.add_argument("--set", action="append", default=[], help="config override for every run")
    parser.add_argument("--json", help="also write every run's record here, as each run ends (a new file)")
    args = parser.parse_args()
    try:
        metric = get_facts(args.benchmark).metric_key       # eval_error or eval_accuracy
    except HarnessError as error:
        sys.exit(f"convergence_seeds: error: {error}")
    record = Path(args.json) if args.json else None
    if record and record.exists():
        sys.exit(f"convergence_seeds: error: {record} exists; name a new --json file (a sweep never replaces one)")

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not args.data:
            subprocess.run([sys.executable, "-m", "mlperf_hpc.cli", "data", "synth", args.benchmark, "--out",
                            str(data)], check=True, cwd=REPO)
        runs = []
        for layout in args.layouts.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                log = Path(tmp) / f"{layout}-{seed}.log"
                runs.append(run(args.benchmark, metric, layout, seed, data, args.set, log))
                if record:
                    keep(runs, record)
                r = runs[-1]
                print(f"{layout:12} seed {seed}: {r['status']:8} in {r['epochs']:3} epochs, "
                      f"{r['minutes'] or 0:.2f} min {r['error']}", flush=True)
    print(f"\n{args.benchmark} mini, {args.seeds} seeds from {args.first_seed}; overrides: {args.set or 'none'}")
    print(f"{'layout':12} {'reached':>8} {'epochs min':>10} {'median':>7} {'max':>4} {'TTT min median':>15} "
          f"{'guard stops':>12}")
    for layout in args.layouts.split(","):
        mine = [r for r in runs if r["layout"] == layout]
        good = [r for r in mine if r["status"] == "success"]
        epochs = [r["epochs"] for r in good] or [0]
        ttt = [r["minutes"] for r in good] or [0.0]
        stopped = [f"seed {r['seed']} at epoch {r['epochs']}" for r in mine if r["exit"] == GUARD_EXIT]
        print(f"{layout:12} {len(good):>4}/{len(mine):<3} {min(epochs):>10} {statistics.median(epochs):>7} "
              f"{max(epochs):>4} {statistics.median(ttt):>15.2f} {len(stopped):>12} {'; '.join(stopped)}")


if __name__ == "__main__":
    main()
