"""The results store's cost: seconds to record one real log (read, hash,
parse, insert), and the time of 'mlperf-hpc results list' (the real command,
Python start-up included) over 10,000 stored runs. Target: under 1 s.

    .venv/bin/python tests/benchmarks/results_store.py [--runs 10000]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mlperf_hpc.results_store import ResultsStore  # noqa: E402

LOGS = sorted((REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA" / "results").rglob("result_*.txt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(Path(tmp) / "store.sqlite")
        start = time.perf_counter()
        records = [store.record_log(log, system="eos") for log in LOGS]
        per_log = (time.perf_counter() - start) / len(LOGS)
        print(f"record one published log (read, hash, parse, insert): {per_log * 1e3:.1f} ms "
              f"(mean of {len(LOGS)}, {sum(p.stat().st_size for p in LOGS) / len(LOGS) / 1024:.0f} KiB each)")
        # Fill to --runs with copies of those records under new hashes.
        copies = [dataclasses.replace(records[i % len(records)], log_hash=f"{i:064x}", campaign=f"c{i // 10}")
                  for i in range(len(records), args.runs)]
        start = time.perf_counter()
        store.add(copies)
        print(f"insert {len(copies)} runs in one transaction: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        listed = store.runs({"system": "eos", "benchmark": "cosmoflow"})
        print(f"query runs(system, benchmark) -> {len(listed)} rows: {(time.perf_counter() - start) * 1e3:.0f} ms")
        store.close()
        command = [sys.executable, "-m", "mlperf_hpc.cli", "results", "list", "--store", str(Path(tmp) / "store.sqlite")]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ})
        elapsed = time.perf_counter() - start
        print(f"'mlperf-hpc results list' over {args.runs} runs: {elapsed:.2f} s "
              f"({len(done.stdout.splitlines())} lines; target < 1 s) {'PASS' if elapsed < 1 else 'MISS'}")


if __name__ == "__main__":
    main()
