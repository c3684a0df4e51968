"""The ``mlperf-hpc`` command line.

Subcommands import TensorFlow only when they need it, after the process-level
settings in ``core.runtime`` are made. Every user error ends as one line
``mlperf-hpc: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from core.benchmark import benchmark_names, get_facts
from core.config import HPC_RULESET, HPC_RULESETS, Valid
from core.errors import HarnessError, RankError
from core.runtime import PEER_EXIT_GRACE_SECONDS, launcher_rank, launcher_size
from mlperf_hpc.arguments import Parser, int_in
from mlperf_hpc.launch_cli import add_launch_commands
from mlperf_hpc.results_cli import add_results_commands, add_store_option
from parallel.topology import LAYOUTS


EXIT_TARGET_MISSED = 3  # training finished its epochs without reaching the target
EXIT_DIVERGED = 4       # the divergence guard stopped a run that could no longer reach it
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
        sources[key] = f"--set {key}"
    return overrides, sources


def _cmd_synth(args: argparse.Namespace) -> int:
    from core import outputs
    from core.benchmark import SPLITS

    facts = get_facts(args.benchmark)
    outputs.fresh_dir(args.out, "--out", (*SPLITS, *facts.synth_outputs))
    n_train, n_valid = facts.synth_samples
    options = {option.dest: getattr(args, option.dest) for option in facts.synth_options}
    from core.runtime import configure_environment
    configure_environment()
    print(facts.synthesise(args.out, n_train if args.n_train is None else args.n_train,
                           n_valid if args.n_valid is None else args.n_valid, args.seed, options))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Everything a run needs is checked before any rank starts work (and
    before TensorFlow starts): the config and its ranges, the layout against
    the processes mpirun started, the outputs, the data files."""
    from core import outputs
    from core.runtime import configure_environment, launcher_size
    from parallel.topology import SPLIT_LAYOUTS, data_groups, layout_split

    configure_environment()
    facts = get_facts(args.benchmark)
    overrides, sources = parse_settings(args.set)
    flags = {"data.data_dir": args.data, "data.stage_dir": args.stage_dir, "data.n_epochs": args.epochs,
             "data.batch_size": args.batch_size, "train.seed": args.seed}
    overrides = {**{k: v for k, v in flags.items() if v is not None}, **overrides}
    sources = {**{k: v for k, v in TRAIN_FLAGS.items() if flags[k] is not None}, **sources}
    config = facts.load_config(args.config, overrides, sources)
    split = layout_split(args.layout, args.spatial)
    config.check_run(split, data_groups(args.layout, split, launcher_size()), lambda key: sources.get(key, key))
    log = args.log if args.log is not None else str(default_log_path(args.benchmark))
    log_path = Path(log)
    if launcher_rank() == 0:                   # the only rank that writes them
        outputs.new_file(log, "--log")
        if args.save_weights is not None:
            outputs.new_file(args.save_weights, "--save-weights")
    gate = None
    if args.instances > 1:
        if args.instance_id is None or args.start_gate is None:
            raise HarnessError("--instances N (weak scaling) needs --instance-id I and --start-gate DIR")
        if args.instance_id >= args.instances:
            raise HarnessError(f"--instance-id {args.instance_id} must be below --instances {args.instances}")
        gate_dir = outputs.writable_dir(args.start_gate, "--start-gate")
    elif args.instance_id is not None or args.start_gate is not None:
        raise HarnessError("--instance-id and --start-gate belong to weak scaling: pass --instances N (N > 1) too")
    try:
        if config.data.stage_dir is not None:  # node-local: each rank checks its own node's
            outputs.writable_dir(config.data.stage_dir, sources.get("data.stage_dir", "data.stage_dir"))
    except HarnessError as err:
        raise RankError(str(err)) from None

    from core.benchmark import SPLITS, get_benchmark
    from mlperf_hpc.driver import train
    from parallel import make_layout
    from parallel.instances import StartGate

    benchmark = get_benchmark(args.benchmark)
    try:
        for data_split in SPLITS:              # the files are there (none is read before the run)
            benchmark.dataset_files(config, data_split)
    except HarnessError as err:
        raise HarnessError(f"{sources.get('data.data_dir', 'data.data_dir')} {config.data.data_dir}: {err}") from None
    if args.layout in SPLIT_LAYOUTS:
        benchmark.mesh_model(config, split)    # the model takes this split
    if args.instances > 1:
        gate = StartGate(gate_dir, args.instance_id, args.instances, args.gate_timeout)
    layout = make_layout(args.layout, split)
    try:
        result = train(benchmark, config, layout, log_path, save_weights=args.save_weights, start_gate=gate)
    except HarnessError as err:                # found by this rank during the run
        raise RankError(str(err)) from None
    except Exception as err:
        if not layout.is_peer_failure(err):
            raise
        raise HarnessError(f"rank {layout.topology.rank} stopped because another rank failed "
                           f"(its error is printed above); the log records run_stop status=aborted") from None
    if result.stopped_because:
        if layout.topology.is_root:
            print(f"{args.benchmark}: stopped, it cannot reach its target: {result.stopped_because}; the log "
                  f"records run_stop status=aborted ({log_path}); lower the learning rate or check "
                  f"train.divergence", file=sys.stderr)
        return EXIT_DIVERGED
    if layout.topology.is_root:
        print(f"{args.benchmark}: {'reached' if result.reached_target else 'did NOT reach'} target in "
              f"{len(result.epochs)} epochs, time to train {result.time_to_train / 60:.2f} min, "
              f"{result.train_samples_per_second:.1f} train samples/s; log {log_path}")
    return 0 if result.reached_target else EXIT_TARGET_MISSED


def _cmd_check(args: argparse.Namespace) -> int:
    from mlperf_hpc.compliance import CheckReport, check_path

    from mlperf_hpc.results_cli import open_store

    store = open_store(args)
    reports = [check_path(path, args.ruleset, args.rcp_bypass) for path in args.paths]
    report = CheckReport([v for r in reports for v in r.verdicts], [s for r in reports for s in r.scores],
                         [p for r in reports for p in r.package], args.rcp_bypass)
    for verdict in report.verdicts:        # every finished run it saw, once
        if verdict.official_tools_may_read and verdict.status:
            in_tree = verdict.group.count("/") == 2
            store.record_log(verdict.path, system=verdict.group.split("/")[0] if in_tree else "")
    store.close()
    print(report.to_json() if args.json else report.table())
    return 0 if report.passed else 1


def _cmd_model(args: argparse.Namespace) -> int:
    from core.runtime import configure_environment
    configure_environment()
    from core.benchmark import get_benchmark
    from core.model_summary import layer_table

    benchmark = get_benchmark(args.benchmark)
    rows = layer_table(benchmark.build_model(benchmark.load_config(args.config)))
    width = max(len(r.name) for r in rows)
    print(f"trainable_parameters {sum(r.parameters for r in rows)}")
    print(f"forward_gflop_per_sample {sum(r.forward_flops for r in rows) / 1e9:.4f}")
    print(f"{'layer':{width}}  {'kind':22} {'output shape':>20} {'parameters':>11} {'GFLOP':>9}")
    for r in rows:
        shape = "x".join(str(d) for d in r.output_shape)
        print(f"{r.name:{width}}  {r.kind:22} {shape:>20} {r.parameters:>11} {r.forward_flops / 1e9:>9.3f}")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    from core.runtime import configure_environment
    configure_environment()
    from mlperf_hpc.provenance import provenance_line

    print(provenance_line(), flush=True)
    return 0


def _cmd_preflight(args: argparse.Namespace) -> int:
    from core.runtime import configure_environment
    configure_environment()
    from mlperf_hpc.provenance import preflight_allreduce

    report = preflight_allreduce(args.megabytes)
    if report:
        print(report, flush=True)
    return 0


def _cmd_rcp(args: argparse.Namespace) -> int:
    from mlperf_hpc.rcp import rcp_outlook

    print("\n".join(rcp_outlook(args.benchmark, args.batch, args.ruleset).lines()))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from core.outputs import fresh_dir
    from mlperf_hpc.report import REPORT_FILES, write_report

    from mlperf_hpc.results_cli import open_store, reference_flags
    from mlperf_hpc.results_store import parse_filters

    paths, notes = list(args.paths), []
    if args.runs is not None:              # runs from the results store
        store = open_store(args)
        records = store.runs(parse_filters(args.runs, "--runs"))
        store.close()
        if not records:
            raise HarnessError(f"--runs {args.runs!r} selects no stored runs: 'mlperf-hpc results list' shows them")
        missing = next((r.log_path for r in records if not Path(r.log_path).is_file()), None)
        if missing:
            raise HarnessError(f"the stored run's log {missing} is gone: select other runs, or pass logs as PATH")
        paths += [r.log_path for r in records]
        flags = reference_flags(records)
        notes = [f"Outside the reference: {r.log_path}: {flags[r.log_hash]}" for r in records if r.log_hash in flags]
    if not paths:
        raise HarnessError("report needs logs: pass PATH... or --runs key=value to take them from the results store")
    fresh_dir(args.out, "--out", REPORT_FILES)
    outputs = write_report(paths, args.out, notes)
    print("\n".join(f"wrote {path}" for path in outputs.values()))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from core.outputs import writable_dir
    from mlperf_hpc.main_job import run_main_job

    return run_main_job(writable_dir(args.workdir, "--workdir"), args.seed)


class _Version(argparse.Action):
    """``--version``: the released version and the commit (asked of git only when wanted)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mlperf_hpc.provenance import harness_commit, harness_version

        print(f"mlperf-hpc {harness_version()} (commit {harness_commit()})")
        parser.exit()


def _add_data(sub: Any, names: list[str]) -> None:
    """mlperf-hpc data synth BENCHMARK"""
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


def _add_train(sub: Any, names: list[str]) -> None:
    """mlperf-hpc train BENCHMARK"""
    targets = "; ".join(f"{n}: {get_facts(n).target_text}" for n in names)
    tr = sub.add_parser(
        "train", help="train a benchmark to its target and write an MLPerf log",
        description=f"Train a benchmark until its quality target ({targets}) or its epoch limit, writing an "
                    f"MLPerf log. Run under 'mpirun -np N' with --layout data for Horovod data parallelism, "
                    f"or spatial/hybrid to split each sample. Exit status: 0 target reached, 3 epochs exhausted "
                    f"without reaching it, 4 stopped by the divergence guard (train.divergence), 2 bad input.")
    tr.add_argument("benchmark", choices=names, metavar="BENCHMARK", help=", ".join(names))
    tr.add_argument("--config", help="YAML config (default: the benchmark's configs/mini.yaml)")
    tr.add_argument("--data", help="dataset directory (overrides data.data_dir)")
    tr.add_argument("--log", help="MLPerf log path (default logs/local/<benchmark>-<time>.log)")
    tr.add_argument("--layout", default="single", choices=LAYOUTS,
                    help="single (one process), data (Horovod), spatial (each sample split over all ranks) "
                         "or hybrid (data-parallel groups, each splitting its samples); run under mpirun")
    tr.add_argument("--spatial", help="AxB split of each sample (spatial/hybrid layouts)")
    tr.add_argument("--stage-dir", help="node-local directory to stage this rank's files to")
    tr.add_argument("--instances", type=int_in(Valid(minimum=1)), default=1,
                    help="weak scaling: instances in this job")
    tr.add_argument("--instance-id", type=int_in(Valid(minimum=0)), help="weak scaling: this instance's id (logged)")
    tr.add_argument("--start-gate", help="weak scaling: shared directory where instances wait for each other")
    tr.add_argument("--gate-timeout", type=int_in(Valid(minimum=1, maximum=7 * 86400)), default=1800,
                    help="weak scaling: seconds an instance waits at the start gate for the others (default 1800)")
    tr.add_argument("--epochs", type=int, help="maximum epochs (overrides data.n_epochs)")
    tr.add_argument("--batch-size", type=int, help="per-replica batch (overrides data.batch_size)")
    tr.add_argument("--seed", type=int, help="random seed (default: config, else a fresh one)")
    tr.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override any config value, e.g. --set data.n_train=256 (repeatable)")
    tr.add_argument("--save-weights", help="rank 0 saves the final model weights to this HDF5 file")
    tr.set_defaults(func=_cmd_train)


def _add_check(sub: Any, names: list[str]) -> None:
    """mlperf-hpc check PATH..."""
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
    ck.add_argument("--ruleset", default=HPC_RULESET, choices=HPC_RULESETS, help=f"hpc ruleset (default {HPC_RULESET})")
    ck.add_argument("--json", action="store_true", help="print the results as JSON")
    ck.add_argument("--rcp-bypass", action="store_true",
                    help="let the official RCP and package checkers pass a set whose convergence the RCPs do not "
                         "cover (the table says so; the review committee decides)")
    add_store_option(ck)
    ck.set_defaults(func=_cmd_check)


def _add_model_version_preflight(sub: Any, names: list[str]) -> None:
    """mlperf-hpc model, version and preflight"""
    md = sub.add_parser(
        "model", help="a benchmark's model: parameters and forward FLOPs, per layer",
        description="Build the benchmark's Keras model from a config and print its trainable parameter count, its "
                    "forward FLOPs per sample (2 per multiply-add of convolutions and dense layers), then one row "
                    "per layer.")
    md.add_argument("benchmark", choices=names, metavar="BENCHMARK", help=", ".join(names))
    md.add_argument("--config", help="YAML config (default: the benchmark's configs/mini.yaml)")
    md.set_defaults(func=_cmd_model)

    ver = sub.add_parser("version", help="one provenance line: commit, Python, TensorFlow, Horovod, MPI",
                         description="Print the harness commit and the versions it runs on (job scripts log it).")
    ver.set_defaults(func=_cmd_version)
    pre = sub.add_parser("preflight", help="an allreduce bandwidth test over the ranks mpirun started",
                         description="Time a Horovod allreduce over every rank (run under mpirun); rank 0 prints "
                                     "the time and bus bandwidth.")
    pre.add_argument("--megabytes", type=int_in(Valid(minimum=1, maximum=16384)), default=64,
                     help="size of the reduced tensor in MiB (default 64)")
    pre.set_defaults(func=_cmd_preflight)


def _add_rcp(sub: Any, names: list[str]) -> None:
    """mlperf-hpc rcp"""
    rc = sub.add_parser(
        "rcp", help="what the official RCP checker expects at a global batch size",
        description="Before a run: whether the official RCP checker has a reference convergence point for this "
                    "global batch size or can interpolate one, the epochs it expects (mean and range), the fastest "
                    "mean it accepts, and when a bypass would be needed.")
    rc.add_argument("--benchmark", required=True, choices=names)
    rc.add_argument("--batch", required=True, type=int_in(Valid(minimum=1)), help="global batch size")
    rc.add_argument("--ruleset", default=HPC_RULESET, choices=HPC_RULESETS, help="hpc ruleset")
    rc.set_defaults(func=_cmd_rcp)


def _add_report(sub: Any, names: list[str]) -> None:
    """mlperf-hpc report"""
    rp = sub.add_parser(
        "report", help="throughput scaling report from the logs of a sweep",
        description="Per run: layout, nodes, processes, global batch, training samples/s (from epoch timings), "
                    "time to train, epochs; speedup and efficiency against the smallest run. Writes CSV, "
                    "Markdown, a self-contained HTML page and PNG plots to --out.")
    rp.add_argument("paths", nargs="*", metavar="PATH", help="logs or directories of logs")
    rp.add_argument("--runs", metavar="FILTERS",
                    help="also the stored runs matching key=value[,key=value] (e.g. campaign=ID or system=local), "
                         "flagging those outside their system's reference values")
    rp.add_argument("--out", required=True, help="output directory")
    add_store_option(rp)
    rp.set_defaults(func=_cmd_report)


def _add_run(sub: Any, names: list[str]) -> None:
    """mlperf-hpc run: the main job"""
    run = sub.add_parser(
        "run", help="the main job: mini CosmoFlow end to end",
        description="Generate the mini synthetic CosmoFlow dataset if missing, train to the closed target "
                    f"({get_facts('cosmoflow').target_text}), write the log under logs/, check it with the official "
                    "checker and print a summary.")
    run.add_argument("--workdir", default=".", help="where data/ and logs/ go (default: current directory)")
    run.add_argument("--seed", type=int_in(Valid(minimum=0, below=2 ** 31)),
                     help="random seed (default: a fresh one per run)")
    run.set_defaults(func=_cmd_run)


def build_parser() -> argparse.ArgumentParser:
    """Every command, each from its own builder."""
    names = benchmark_names()
    parser = Parser(
        prog="mlperf-hpc",
        description="MLPerf HPC benchmark harness: synthesise data, train CosmoFlow and DeepCAM under data-parallel, "
                    "spatial and hybrid layouts, write MLPerf logs and check them with the official checker.")
    parser.add_argument("--version", action=_Version, nargs=0, help="the harness's version and git commit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_data, _add_train, _add_check, _add_model_version_preflight, _add_rcp, _add_report):
        add(sub, names)
    add_launch_commands(sub)
    add_results_commands(sub)
    _add_run(sub, names)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except HarnessError as err:
        # Under mpirun every rank checks the same arguments: one says so.
        if isinstance(err, RankError) or launcher_rank() == 0:
            print(f"mlperf-hpc: error: {err}", file=sys.stderr)
        elif launcher_size() > 1:
            # Once any rank exits non-zero mpirun kills the rest: the silent
            # ranks wait, so that rank 0 prints its line and exits first.
            time.sleep(PEER_EXIT_GRACE_SECONDS)
        return 2
    except KeyboardInterrupt:
        print("mlperf-hpc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                    # output piped into head, say: nothing more to say
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
