"""Data-parallel (Horovod over MPI) throughput on this machine (a benchmark,
not a test): 1 rank x 1 thread, 1 rank x 2 threads and 2 ranks x 1 thread at
a fixed per-rank batch, the allreduce time per step, and the weak-scaling
efficiency T(2 ranks) / (2 x T(1 rank)), each rank with one core.

    .venv/bin/python tests/benchmarks/data_parallel_scaling.py [--size 32] [--batch 8] [--epochs 4]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def mpirun(ranks: int, threads: int, *command: str) -> str:
    env = {**os.environ, **MPI_ENV, "MLPERF_HPC_THREADS": str(threads)}
    full = ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none", "-x", "MLPERF_HPC_THREADS",
            sys.executable, *command]
    result = subprocess.run(full, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode not in (0, 3):  # 3: epochs done, target (deliberately) not reached
        sys.exit(f"failed: {' '.join(full)}\n{result.stderr[-3000:]}")
    return result.stdout


def epoch_throughput(log: Path) -> tuple[float, float]:
    """(samples/s over the epochs after the first, seconds per step) from the
    MLPerf log's epoch timestamps."""
    records = [json.loads(ln.split(":::MLLOG", 1)[1]) for ln in log.read_text().splitlines() if ":::MLLOG" in ln]
    value = {r["key"]: r["value"] for r in records}
    starts = {r["metadata"]["epoch_num"]: r["time_ms"] for r in records if r["key"] == "epoch_start"}
    stops = {r["metadata"]["epoch_num"]: r["time_ms"] for r in records if r["key"] == "epoch_stop"}
    epochs = sorted(stops)[1:]
    seconds = sum(stops[e] - starts[e] for e in epochs) / 1e3
    samples = value["train_samples"] * len(epochs)
    steps = samples / value["global_batch_size"]
    return samples / seconds, seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8, help="per-rank batch")
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    from core.runtime import configure_environment
    configure_environment()
    from cosmoflow.model import build_model
    from cosmoflow.synth import generate

    n_params = build_model([args.size] * 3 + [4]).count_params()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = generate(Path(tmp) / "data", args.size, args.n_train, 32, progress=False)
        for ranks, threads in ((1, 1), (1, 2), (2, 1)):
            log = Path(tmp) / f"r{ranks}t{threads}.log"
            mpirun(ranks, threads, "-m", "mlperf_hpc.cli", "train", "cosmoflow", "--layout", "data",
                   "--config", str(REPO / "cosmoflow/configs/cosmo.yaml"), "--data", str(data_dir),
                   "--batch-size", str(args.batch), "--epochs", str(args.epochs), "--seed", "0", "--log", str(log),
                   "--set", f"data.sample_shape=[{args.size},{args.size},{args.size},4]",
                   "--set", f"data.n_train={args.n_train}", "--set", "data.n_valid=32",
                   "--set", "train.target=0.0")
            rate, step = epoch_throughput(log)
            out = mpirun(ranks, threads, str(REPO / "tests/benchmarks/allreduce_time.py"), str(n_params), "20")
            allreduce_ms = float(re.search(r"ALLREDUCE_MS ([\d.]+)", out).group(1))
            rows.append((ranks, threads, rate, step * 1e3, allreduce_ms))
            print(f"{ranks} rank(s) x {threads} thread(s): {rate:.1f} samples/s", flush=True)

    print(f"\nCosmoFlow reference model at {args.size}^3, per-rank batch {args.batch}, "
          f"{n_params / 1e6:.2f} M parameters ({n_params * 4 / 2**20:.1f} MiB of gradients per step)")
    print(f"{'layout':>18} {'samples/s':>10} {'step ms':>8} {'allreduce ms':>13} {'allreduce share':>16}")
    for ranks, threads, rate, step_ms, allreduce_ms in rows:
        share = allreduce_ms / step_ms if ranks > 1 else 0.0
        print(f"{f'{ranks} rank x {threads} thr':>18} {rate:>10.1f} {step_ms:>8.1f} {allreduce_ms:>13.2f} "
              f"{share:>16.1%}")
    single = rows[0][2]
    two_threads = rows[1][2]
    two_ranks = rows[2][2]
    print(f"\nweak-scaling efficiency (2 ranks x 1 core vs 2 x 1 rank x 1 core): {two_ranks / (2 * single):.1%}")
    print(f"2 ranks x 1 thread vs 1 rank x 2 threads (same 2 cores): {two_ranks / two_threads:.2f}x")


if __name__ == "__main__":
    main()
