"""The ``mlperf-hpc`` command line.

Subcommands import TensorFlow only when they need it, after the process-level
settings in ``mlperf_hpc.runtime`` are made. Every user error ends as one line
``mlperf-hpc: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mlperf_hpc.errors import HarnessError

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def default_config(benchmark: str) -> Path:
    return PACKAGE_ROOT / benchmark / "configs" / "mini.yaml"


def default_log_path(benchmark: str) -> Path:
    return Path("logs") / "local" / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def parse_settings(settings: list[str]) -> dict:
    """``--set section.key=VALUE`` pairs, each VALUE read as YAML."""
    import yaml

    overrides = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise HarnessError(f"--set '{item}' must look like section.key=value (e.g. data.n_train=256)")
        overrides[key] = yaml.safe_load(value)
    return overrides


def _cmd_synth(args: argparse.Namespace) -> int:
    if args.benchmark != "cosmoflow":
        raise HarnessError(f"no synthetic generator for '{args.benchmark}' yet: use cosmoflow")
    if args.size % 32:
        raise HarnessError(f"--size {args.size} must be a multiple of 32 (five 2x poolings down to 1)")
    from mlperf_hpc.runtime import configure_environment
    configure_environment()
    from cosmoflow.synth import generate

    out = generate(args.out, args.size, args.n_train, args.n_valid, args.format, args.samples_per_file,
                   args.seed)
    print(f"wrote {args.n_train} train + {args.n_valid} validation {args.size}^3x4 samples ({args.format}) "
          f"to {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from mlperf_hpc.runtime import configure_environment
    configure_environment()
    from mlperf_hpc.benchmark import get_benchmark
    from mlperf_hpc.driver import train
    from parallel.layouts import make_layout

    benchmark = get_benchmark(args.benchmark)
    overrides = {"data.data_dir": args.data, "data.stage_dir": args.stage_dir, "data.n_epochs": args.epochs,
                 "data.batch_size": args.batch_size, "train.seed": args.seed, **parse_settings(args.set)}
    config = benchmark.load_config(args.config or default_config(args.benchmark), overrides)
    layout = make_layout(args.layout)
    log_path = Path(args.log) if args.log else default_log_path(args.benchmark)
    try:
        result = train(benchmark, config, layout, log_path, save_weights=args.save_weights)
    except Exception as err:
        if not layout.is_peer_failure(err):
            raise
        raise HarnessError(f"rank {layout.topology.rank} stopped because another rank failed "
                           f"(its error is printed above); the log records run_stop status=aborted") from None
    if layout.topology.is_root:
        print(f"{args.benchmark}: {'reached' if result.reached_target else 'did NOT reach'} target in "
              f"{len(result.epochs)} epochs, time to train {result.time_to_train / 60:.2f} min, "
              f"{result.train_samples_per_second:.1f} train samples/s; log {log_path}")
    return 0 if result.reached_target else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from mlperf_hpc.compliance import check_log

    verdicts = [check_log(path, args.ruleset) for path in args.logs]
    for verdict in verdicts:
        print(verdict.line())
    return 0 if all(v.passed for v in verdicts) else 1


def _cmd_run(args: argparse.Namespace) -> int:
    from mlperf_hpc.main_job import run_main_job

    return run_main_job(Path(args.workdir), args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlperf-hpc",
        description="MLPerf HPC benchmark harness: synthesise data, train CosmoFlow under data-parallel "
                    "layouts, write MLPerf logs and check them with the official checker.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="dataset tools", description="Dataset tools.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser(
        "synth", help="write a synthetic dataset in the reference format",
        description="Write a synthetic dataset in the benchmark's reference on-disk format (CosmoFlow: "
                    "GZIP TFRecords with int16 'x' volumes and float32[4] 'y' targets under train/ and "
                    "validation/). The targets determine each volume's statistics, so models can learn them.")
    synth.add_argument("benchmark", help="cosmoflow")
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--size", type=int, default=32, help="cube side in voxels (32, 64, 128; default 32)")
    synth.add_argument("--n-train", type=int, default=1024, help="training samples (default 1024)")
    synth.add_argument("--n-valid", type=int, default=256, help="validation samples (default 256)")
    synth.add_argument("--format", choices=["tfrecord", "hdf5"], default="tfrecord")
    synth.add_argument("--samples-per-file", type=int, default=1)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_cmd_synth)

    tr = sub.add_parser(
        "train", help="train a benchmark to its target and write an MLPerf log",
        description="Train a benchmark until its quality target (CosmoFlow: val MAE <= 0.124) or its epoch "
                    "limit, writing an MLPerf log. Run under 'mpirun -np N' with --layout data for Horovod "
                    "data parallelism.")
    tr.add_argument("benchmark", help="cosmoflow")
    tr.add_argument("--config", help="YAML config (default: the benchmark's configs/mini.yaml)")
    tr.add_argument("--data", help="dataset directory (overrides data.data_dir)")
    tr.add_argument("--log", help="MLPerf log path (default logs/local/<benchmark>-<time>.log)")
    tr.add_argument("--layout", default="single", help="single (one process) or data (Horovod)")
    tr.add_argument("--stage-dir", help="node-local directory to stage this rank's files to")
    tr.add_argument("--epochs", type=int, help="maximum epochs (overrides data.n_epochs)")
    tr.add_argument("--batch-size", type=int, help="per-replica batch (overrides data.batch_size)")
    tr.add_argument("--seed", type=int, help="random seed (default: config, else a fresh one)")
    tr.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override any config value, e.g. --set data.n_train=256 (repeatable)")
    tr.add_argument("--save-weights", help="rank 0 saves the final model weights to this HDF5 file")
    tr.set_defaults(func=_cmd_train)

    ck = sub.add_parser(
        "check", help="check MLPerf logs with the official compliance checker",
        description="Run the official mlperf-logging compliance checker (--usage hpc) on each log; print "
                    "one verdict line per log with the time to train. Exit 1 if any log fails.")
    ck.add_argument("logs", nargs="+", metavar="LOG")
    ck.add_argument("--ruleset", default="3.0.0", help="hpc ruleset (default 3.0.0)")
    ck.set_defaults(func=_cmd_check)

    run = sub.add_parser(
        "run", help="the main job: mini CosmoFlow end to end",
        description="Generate the mini synthetic CosmoFlow dataset if missing, train to the closed target "
                    "(val MAE <= 0.124), write the log under logs/, check it with the official checker and "
                    "print a summary.")
    run.add_argument("--workdir", default=".", help="where data/ and logs/ go (default: current directory)")
    run.add_argument("--seed", type=int, help="random seed (default: a fresh one per run)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as err:
        print(f"mlperf-hpc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlperf-hpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
