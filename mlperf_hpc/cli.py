"""The ``mlperf-hpc`` command line.

Subcommands import TensorFlow only when they need it, after the process-level
settings in ``core.runtime`` are made. Every user error ends as one line
``mlperf-hpc: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from core.benchmark import benchmark_names, get_facts
from core.config import Valid
from core.errors import HarnessError

EXIT_TARGET_MISSED = 3  # training finished its epochs without reaching the target
# The config keys training flags set, and the flag each comes from.
TRAIN_FLAGS = {"data.data_dir": "--data", "data.stage_dir": "--stage-dir", "data.n_epochs": "--epochs",
               "data.batch_size": "--batch-size", "train.seed": "--seed"}


def default_log_path(benchmark: str) -> Path:
    return Path("logs") / "local" / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}.log"


def parse_settings(settings: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``--set section.key=VALUE`` pairs, each VALUE read as YAML; returns the
    overrides and, per key, the flag it came from (for error messages)."""
    import yaml

    overrides, sources = {}, {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise HarnessError(f"--set '{item}' must look like section.key=value (e.g. data.n_train=256)")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise HarnessError(f"--set '{item}': the value is not valid YAML") from None
        sources[key] = f"--set {item}"
    return overrides, sources


def _cmd_synth(args: argparse.Namespace) -> int:
    facts = get_facts(args.benchmark)
    n_train, n_valid = facts.synth_samples
    options = {option.dest: getattr(args, option.dest) for option in facts.synth_options}
    from core.runtime import configure_environment
    configure_environment()
    print(facts.synthesise(args.out, n_train if args.n_train is None else args.n_train,
                           n_valid if args.n_valid is None else args.n_valid, args.seed, options))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from core.runtime import configure_environment
    configure_environment()
    from core.benchmark import get_benchmark
    from mlperf_hpc.driver import train
    from parallel import make_layout
    from parallel.instances import StartGate
    from parallel.topology import SPLIT_LAYOUTS, layout_split

    benchmark = get_benchmark(args.benchmark)
    overrides, sources = parse_settings(args.set)
    flags = {"data.data_dir": args.data, "data.stage_dir": args.stage_dir, "data.n_epochs": args.epochs,
             "data.batch_size": args.batch_size, "train.seed": args.seed}
    overrides = {**{k: v for k, v in flags.items() if v is not None}, **overrides}
    config = benchmark.load_config(args.config, overrides, {**TRAIN_FLAGS, **sources})
    split = layout_split(args.layout, args.spatial)
    if args.layout in SPLIT_LAYOUTS:
        # Refuses a split the model's shapes cannot take before any rank starts work.
        benchmark.mesh_model(config, split)
    layout = make_layout(args.layout, split)
    log_path = Path(args.log) if args.log else default_log_path(args.benchmark)
    gate = None
    if args.instances > 1:
        if args.instance_id is None or not args.start_gate:
            raise HarnessError("--instances N (weak scaling) needs --instance-id I and --start-gate DIR")
        gate = StartGate(Path(args.start_gate), args.instance_id, args.instances)
    try:
        result = train(benchmark, config, layout, log_path, save_weights=args.save_weights, start_gate=gate)
    except Exception as err:
        if not layout.is_peer_failure(err):
            raise
        raise HarnessError(f"rank {layout.topology.rank} stopped because another rank failed "
                           f"(its error is printed above); the log records run_stop status=aborted") from None
    if layout.topology.is_root:
        print(f"{args.benchmark}: {'reached' if result.reached_target else 'did NOT reach'} target in "
              f"{len(result.epochs)} epochs, time to train {result.time_to_train / 60:.2f} min, "
              f"{result.train_samples_per_second:.1f} train samples/s; log {log_path}")
    return 0 if result.reached_target else EXIT_TARGET_MISSED


def _cmd_check(args: argparse.Namespace) -> int:
    from mlperf_hpc.compliance import CheckReport, check_path

    reports = [check_path(path, args.ruleset, args.rcp_bypass) for path in args.paths]
    report = CheckReport([v for r in reports for v in r.verdicts], [s for r in reports for s in r.scores],
                         [p for r in reports for p in r.package])
    print(report.to_json() if args.json else report.table())
    return 0 if report.passed else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from mlperf_hpc.report import write_report

    outputs = write_report(args.paths, args.out)
    print("\n".join(f"wrote {path}" for path in outputs.values()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from mlperf_hpc.main_job import run_main_job

    return run_main_job(Path(args.workdir), args.seed)


def _job_from_args(args: argparse.Namespace):
    from launch.job import JobSpec
    from launch.system import load_system

    def absolute(path: str | None) -> str | None:
        # Jobs start elsewhere (the scheduler's cwd): pin paths now.
        return str(Path(path).absolute()) if path else None

    return JobSpec(system=load_system(args.system), benchmark=args.benchmark, nodes=args.nodes, layout=args.layout,
                   spatial=args.spatial, config=absolute(args.config), data_dir=absolute(args.data),
                   elapse=args.elapse, name=args.name, group=args.group, resource_group=args.rscgrp,
                   procs_per_node=args.ppn, instances=args.instances, node_shape=args.shape,
                   node_topology=args.topology,
                   job_dir=absolute(args.job_dir or f"jobs/{args.name}"), seed=args.seed)


def _cmd_launch(args: argparse.Namespace) -> int:
    from launch import submit as launching
    from launch.render import render
    from launch.system import load_system

    if args.action == "render":
        job = _job_from_args(args)
        rendered = render(job)
        if args.write:
            print(f"wrote {rendered.write(job.job_dir)}")
        else:
            print(rendered.script, end="")
    elif args.action == "submit":
        command, job_id = launching.submit(_job_from_args(args), args.dry_run)
        print(" ".join(command) if args.dry_run else f"submitted {job_id}: {' '.join(command)}")
    elif args.action == "status":
        for job in launching.status(load_system(args.system), args.job_id):
            print(f"{job.job_id}  {job.name}  {job.state}  ({job.raw})")
    elif args.action == "cancel":
        print(" ".join(launching.cancel(load_system(args.system), args.job_id)))
    elif args.action == "sweep":
        from launch.submit import parse_layouts

        nodes = [int(n) for n in args.nodes_list.split(",")]
        sweep_dir = str(Path(args.job_dir or f"sweeps/{args.name}").absolute())
        manifest = launching.sweep(_job_from_args(argparse.Namespace(**{**vars(args), "nodes": nodes[0]})),
                                   nodes, parse_layouts(args.layouts), sweep_dir, not args.render_only, args.dry_run)
        for point in manifest["points"]:
            print(f"{point['layout']}{':' + point['spatial'] if point['spatial'] else ''} x {point['nodes']} nodes: "
                  f"{point.get('job_id') or ' '.join(point.get('command', [])) or point['script']}")
        print(f"manifest {sweep_dir}/manifest.json")
    elif args.action == "collect":
        copied = launching.collect(args.paths, args.org, load_system(args.system), args.into)
        print("\n".join(f"collected {p}" for p in copied) or "no finished runs found")
        return 0 if copied else 1
    return 0


def _add_job_options(p: argparse.ArgumentParser, nodes: bool = True) -> None:
    p.add_argument("--system", required=True, help="fugaku, abci2, abci3, local (launch/systems/*.yaml)")
    p.add_argument("--benchmark", default="cosmoflow", choices=benchmark_names())
    if nodes:
        p.add_argument("--nodes", type=int, required=True, help="nodes per instance")
    p.add_argument("--layout", default="data", help="data, spatial or hybrid")
    p.add_argument("--spatial", help="AxB split of each sample, e.g. 4x1 (spatial/hybrid)")
    p.add_argument("--config", help="benchmark YAML config")
    p.add_argument("--data", help="dataset directory on the shared file system")
    p.add_argument("--elapse", default="1:00:00", help="wall-clock limit H:MM:SS")
    p.add_argument("--name", default="mlperf-hpc", help="job name")
    p.add_argument("--group", help="group / project charged for the job")
    p.add_argument("--rscgrp", help="resource group / queue (default: the system's)")
    p.add_argument("--ppn", type=int, help="processes per node (default: the system's)")
    p.add_argument("--instances", type=int, default=1, help="weak scaling: concurrent instances")
    p.add_argument("--shape", help="Fugaku node shape of the whole job, e.g. 4x3x8")
    p.add_argument("--topology", choices=["torus", "mesh", "noncont"],
                   help="Fugaku node allocation: torus/mesh (with --shape, default torus) or noncont")
    p.add_argument("--job-dir", help="where the script, placement files and logs go")
    p.add_argument("--seed", type=int, help="base seed (instance i uses seed + i)")


class _Parser(argparse.ArgumentParser):
    """Usage errors as the harness's one line, not argparse's usage block."""

    def error(self, message: str) -> None:
        raise HarnessError(message)


def int_in(valid: Valid) -> Callable[[str], int]:
    """An argparse type: an integer in ``valid``'s range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not valid.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {valid}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    names = benchmark_names()
    parser = _Parser(
        prog="mlperf-hpc",
        description="MLPerf HPC benchmark harness: synthesise data, train CosmoFlow and DeepCAM under data-parallel, "
                    "spatial and hybrid layouts, write MLPerf logs and check them with the official checker.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="dataset tools", description="Dataset tools.")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser(
        "synth", help="write a synthetic dataset in the reference format",
        description="Write a synthetic dataset in the benchmark's reference on-disk format, whose samples carry "
                    "what the model must learn (CosmoFlow: the four targets set each volume's statistics; "
                    "DeepCAM: cyclones and atmospheric rivers are visible in the fields and labelled).")
    synth_sub = synth.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name in names:
        facts = get_facts(name)
        n_train, n_valid = facts.synth_samples
        one = synth_sub.add_parser(name, help=f"{name} in its reference format",
                                   description=f"Write a synthetic {name} dataset in its reference format.")
        one.add_argument("--out", required=True, help="output directory")
        one.add_argument("--n-train", type=int_in(Valid(minimum=1)),
                         help=f"training samples (default {n_train}, what the default config reads)")
        one.add_argument("--n-valid", type=int_in(Valid(minimum=1)), help=f"validation samples (default {n_valid})")
        one.add_argument("--seed", type=int_in(Valid(minimum=0, below=2 ** 31)), default=0)
        for option in facts.synth_options:
            kind = int_in(option.valid or Valid()) if option.kind is int else str
            one.add_argument(option.flag, type=kind, default=option.default, choices=option.choices,
                             help=option.help)
        one.set_defaults(func=_cmd_synth)

    targets = "; ".join(f"{n}: {get_facts(n).target_text}" for n in names)
    tr = sub.add_parser(
        "train", help="train a benchmark to its target and write an MLPerf log",
        description=f"Train a benchmark until its quality target ({targets}) or its epoch limit, writing an "
                    f"MLPerf log. Run under 'mpirun -np N' with --layout data for Horovod data parallelism, "
                    f"or spatial/hybrid to split each sample. Exit status: 0 target reached, 3 epochs exhausted "
                    f"without reaching it, 2 bad input.")
    tr.add_argument("benchmark", choices=names, metavar="BENCHMARK", help=", ".join(names))
    tr.add_argument("--config", help="YAML config (default: the benchmark's configs/mini.yaml)")
    tr.add_argument("--data", help="dataset directory (overrides data.data_dir)")
    tr.add_argument("--log", help="MLPerf log path (default logs/local/<benchmark>-<time>.log)")
    tr.add_argument("--layout", default="single",
                    help="single (one process), data (Horovod), spatial (each sample split over all ranks) "
                         "or hybrid (data-parallel groups, each splitting its samples); run under mpirun")
    tr.add_argument("--spatial", help="AxB split of each sample (spatial/hybrid layouts)")
    tr.add_argument("--stage-dir", help="node-local directory to stage this rank's files to")
    tr.add_argument("--instances", type=int_in(Valid(minimum=1)), default=1,
                    help="weak scaling: instances in this job")
    tr.add_argument("--instance-id", type=int_in(Valid(minimum=0)), help="weak scaling: this instance's id (logged)")
    tr.add_argument("--start-gate", help="weak scaling: shared directory where instances wait for each other")
    tr.add_argument("--epochs", type=int, help="maximum epochs (overrides data.n_epochs)")
    tr.add_argument("--batch-size", type=int, help="per-replica batch (overrides data.batch_size)")
    tr.add_argument("--seed", type=int, help="random seed (default: config, else a fresh one)")
    tr.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override any config value, e.g. --set data.n_train=256 (repeatable)")
    tr.add_argument("--save-weights", help="rank 0 saves the final model weights to this HDF5 file")
    tr.set_defaults(func=_cmd_train)

    ck = sub.add_parser(
        "check", help="check logs, directories or submission trees for compliance",
        description="Run the official mlperf-logging compliance checker (--usage hpc) on every log under "
                    "each PATH (a log, a directory, or a submission tree <org>/results/<system>/strong|weak/"
                    "<benchmark>/result_N.txt, where the official package checker runs too), plus checks "
                    "across runs: required run count ("
                    + ", ".join(f"{n} {get_facts(n).required_runs}" for n in names) + "), distinct seeds, identical "
                    "hyperparameters and global batch, monotonic timestamps, run_stop status. Prints one row per "
                    "log and the MLPerf HPC scores; exits 1 if anything fails.")
    ck.add_argument("paths", nargs="+", metavar="PATH")
    ck.add_argument("--ruleset", default="3.0.0", help="hpc ruleset (default 3.0.0)")
    ck.add_argument("--json", action="store_true", help="print the results as JSON")
    ck.add_argument("--rcp-bypass", action="store_true", help="pass rcp-bypass to the official package checker")
    ck.set_defaults(func=_cmd_check)

    rp = sub.add_parser(
        "report", help="throughput scaling report from the logs of a sweep",
        description="Per run: layout, nodes, processes, global batch, training samples/s (from epoch timings), "
                    "time to train, epochs; speedup and efficiency against the smallest run. Writes CSV, "
                    "Markdown, a self-contained HTML page and PNG plots to --out.")
    rp.add_argument("paths", nargs="+", metavar="PATH", help="logs or directories of logs")
    rp.add_argument("--out", required=True, help="output directory")
    rp.set_defaults(func=_cmd_report)

    launch = sub.add_parser(
        "launch", help="job scripts, submission, sweeps and log collection",
        description="Render and submit benchmark jobs for a system (Fugaku PJM, ABCI UGE/PBS, local mpirun), "
                    "run scaling sweeps, and collect finished runs into the MLPerf HPC submission layout.")
    launch_sub = launch.add_subparsers(dest="action", required=True, metavar="ACTION")
    render_p = launch_sub.add_parser("render", help="print (or --write) the job script",
                                     description="Print the job script for a system, or write it to --job-dir.")
    _add_job_options(render_p)
    render_p.add_argument("--write", action="store_true", help="write job.sh and placement files to --job-dir")
    submit_p = launch_sub.add_parser("submit", help="write and submit the job script",
                                     description="Write the job script and submit it (local: run it now).")
    _add_job_options(submit_p)
    submit_p.add_argument("--dry-run", action="store_true", help="print the exact submit command only")
    status_p = launch_sub.add_parser("status", help="the scheduler's view of your jobs",
                                     description="Run the scheduler's status tool and print parsed states.")
    status_p.add_argument("--system", required=True)
    status_p.add_argument("job_id", nargs="?")
    cancel_p = launch_sub.add_parser("cancel", help="cancel a job", description="Cancel a job.")
    cancel_p.add_argument("--system", required=True)
    cancel_p.add_argument("job_id")
    sweep_p = launch_sub.add_parser(
        "sweep", help="one job per node count and layout",
        description="Render (and submit) one job per point of --nodes x --layouts, recorded in a manifest.")
    _add_job_options(sweep_p, nodes=False)
    sweep_p.add_argument("--nodes", dest="nodes_list", required=True, help="comma-separated, e.g. 1,2,4,8")
    sweep_p.add_argument("--layouts", default="data", help="comma-separated, e.g. data,hybrid:4x1")
    sweep_p.add_argument("--render-only", action="store_true", help="write the scripts, submit nothing")
    sweep_p.add_argument("--dry-run", action="store_true", help="print the submit commands only")
    collect_p = launch_sub.add_parser(
        "collect", help="copy finished runs' logs into the submission layout",
        description="Copy finished runs' logs (job directories or sweep directories) into "
                    "INTO/<org>/results/<system>/strong|weak/<benchmark>/result_N.txt and write "
                    "INTO/<org>/systems/<system>.json.")
    collect_p.add_argument("paths", nargs="+", metavar="DIR")
    collect_p.add_argument("--system", required=True)
    collect_p.add_argument("--org", default="mlperf-hpc")
    collect_p.add_argument("--into", default="logs")
    launch.set_defaults(func=_cmd_launch)

    run = sub.add_parser(
        "run", help="the main job: mini CosmoFlow end to end",
        description="Generate the mini synthetic CosmoFlow dataset if missing, train to the closed target "
                    f"({get_facts('cosmoflow').target_text}), write the log under logs/, check it with the official "
                    "checker and print a summary.")
    run.add_argument("--workdir", default=".", help="where data/ and logs/ go (default: current directory)")
    run.add_argument("--seed", type=int, help="random seed (default: a fresh one per run)")
    run.set_defaults(func=_cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except HarnessError as err:
        print(f"mlperf-hpc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlperf-hpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
