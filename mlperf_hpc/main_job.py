"""The embedded default (``mlperf-hpc run``): mini CosmoFlow end to end.

Generates the mini synthetic dataset if missing, trains to the closed target
on this machine, checks the log with the official checker and prints a
summary, and writes the throughput report of its own run. Everything it
writes stays under ``data/`` and ``logs/``.
"""
from __future__ import annotations

import time
from pathlib import Path

from core.runtime import configure_environment

BENCHMARK = "cosmoflow"


def run_main_job(workdir: Path, seed: int | None = None) -> int:
    configure_environment()
    from core.benchmark import get_benchmark
    from mlperf_hpc.compliance import check_log
    from mlperf_hpc.driver import train
    from mlperf_hpc.report import write_report
    from parallel.layouts import SingleProcess

    layout = SingleProcess()        # chooses the device before any TensorFlow op
    benchmark = get_benchmark(BENCHMARK)
    facts = benchmark.facts
    config_path = facts.config_path()
    config = benchmark.load_config(config_path)
    data_dir = workdir / "data" / f"{BENCHMARK}-mini"
    config.data.data_dir = str(data_dir)
    config.train.seed = seed if seed is not None else config.train.seed
    size = config.data.sample_shape[0]
    if not (data_dir / "validation").is_dir():
        print(f"[run] generating the mini dataset ({config.data.n_train} + {config.data.n_valid} samples, "
              f"{size}^3x4) in {data_dir}", flush=True)
        part = data_dir.with_name(data_dir.name + ".part")
        facts.synthesise(part, config.data.n_train, config.data.n_valid, seed=1,
                         options={"size": size, "format": config.data.format, "samples_per_file": 1})
        part.rename(data_dir)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = workdir / "logs" / "local" / f"{BENCHMARK}-mini-{stamp}.log"
    print(f"[run] training CosmoFlow ({config_path.name}) to {facts.metric_name} <= {config.train.target}; "
          f"log {log_path}", flush=True)
    result = train(benchmark, config, layout, log_path=log_path)
    verdict = check_log(log_path)
    print(f"[run] official checker (hpc {config.mlperf.benchmark_version}, {config.mlperf.division}): "
          f"{verdict.line()}")
    print(f"[run] summary: target {'reached' if result.reached_target else 'NOT reached'} "
          f"({facts.metric_name} {result.final_metric:.4f}) in {len(result.epochs)} epochs; time to train "
          f"{result.time_to_train / 60:.2f} min (staging {result.staging_seconds:.1f}s); "
          f"{result.train_samples_per_second:.1f} train samples/s at global batch {result.global_batch}")
    report = write_report([log_path], workdir / "logs" / "local" / f"report-{stamp}")
    print(f"[run] report: {report['html']} (plots: {', '.join(str(report[k]) for k in ('throughput', 'breakdown'))})")
    return 0 if (result.reached_target and verdict.passed) else 1
