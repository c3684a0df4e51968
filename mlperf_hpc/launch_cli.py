"""The ``mlperf-hpc launch`` commands: job scripts, submission, status,
sweeps and collection. Every option is checked, by the same rules the
training command applies when the job starts, before anything is written
or queued."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from core.benchmark import benchmark_names
from core.config import Valid
from core.errors import HarnessError
from launch.job import SAFE_NAME, JobSpec, job_logs
from launch.system import available_systems, load_system
from mlperf_hpc.arguments import int_in
from mlperf_hpc.results_cli import add_store_option, open_store
from parallel.topology import LAYOUTS


def _job_from_args(args: argparse.Namespace, nodes: int | None = None) -> JobSpec:
    def absolute(path: str | None, option: str) -> str | None:
        # Jobs start elsewhere (the scheduler's cwd): pin paths now.
        if path is not None and not path.strip():
            raise HarnessError(f"{option} needs a path, got ''")
        return str(Path(path).absolute()) if path else None

    return JobSpec(system=load_system(args.system), benchmark=args.benchmark, nodes=nodes or args.nodes,
                   layout=args.layout, spatial=args.spatial, config=absolute(args.config, "--config"),
                   data_dir=absolute(args.data, "--data"), elapse=args.elapse, name=args.name, group=args.group,
                   resource_group=args.rscgrp, procs_per_node=args.ppn, instances=args.instances,
                   node_shape=args.shape, node_topology=args.topology,
                   job_dir=absolute(args.job_dir if args.job_dir is not None else f"jobs/{args.name}", "--job-dir"),
                   seed=args.seed, preflight=args.preflight, keep_staged=args.keep_staged,
                   gate_timeout=args.gate_timeout)


def parse_node_counts(text: str) -> list[int]:
    """``--nodes 1,2,4,8`` of a sweep."""
    counts = [part.strip() for part in text.split(",")]
    if not all(re.match(r"^\d{1,6}$", c) and int(c) > 0 for c in counts):
        raise HarnessError(f"--nodes '{text}' must be positive node counts separated by commas, e.g. 1,2,4,8")
    return [int(c) for c in counts]


def _cmd_launch(args: argparse.Namespace) -> int:
    from core.outputs import writable_dir
    from launch import submit as launching
    from launch.render import render

    if args.action == "render":
        job = _job_from_args(args)
        rendered = render(job)
        writable_dir(job.job_dir, "--job-dir")     # the job writes its logs there
        if args.write:
            print(f"wrote {launching.write_job(job)}")
        else:
            print(rendered.script, end="")
    elif args.action == "submit":
        job = _job_from_args(args)
        writable_dir(job.job_dir, "--job-dir")
        if args.pack and args.runs is None:
            raise HarnessError("--pack packs a campaign's runs into one job: pass --runs [N] too")
        if args.runs is None:
            command, job_id = launching.submit(job, args.dry_run)
            print(" ".join(command) if args.dry_run else f"submitted {job_id}: {' '.join(command)}")
        else:
            return _submit_campaign(job, args)
    elif args.action == "status":
        if args.campaign:
            return _campaign_status(args)
        for job in launching.status(load_system(args.system), args.job_id):
            print(f"{job.job_id}  {job.name}  {job.state}  ({job.raw})")
    elif args.action == "cancel":
        print(" ".join(launching.cancel(load_system(args.system), args.job_id)))
    elif args.action == "sweep":
        from launch.submit import parse_layouts

        nodes = parse_node_counts(args.nodes_list)
        sweep_dir = str(writable_dir(Path(args.job_dir if args.job_dir is not None else f"sweeps/{args.name}")
                                     .absolute(), "--job-dir"))
        submitting = not (args.render_only or args.dry_run)
        store = open_store(args) if submitting else None      # refused before anything is queued
        base = _job_from_args(args, nodes[0])
        manifest = launching.sweep(base, nodes, parse_layouts(args.layouts), sweep_dir, not args.render_only,
                                   args.dry_run)
        for point in manifest["points"]:
            print(f"{point['layout']}{':' + point['spatial'] if point['spatial'] else ''} x {point['nodes']} nodes: "
                  f"{point.get('job_id') or ' '.join(point.get('command', [])) or point['script']}")
        print(f"manifest {sweep_dir}/manifest.json")
        if store is not None:
            _record_campaign(store, f"{base.name}-sweep-{manifest['created']}", manifest["created"], base, "sweep",
                             [Path(p["job_dir"]) for p in manifest["points"]])
            store.close()
    elif args.action == "collect":
        if not SAFE_NAME.match(args.org):
            raise HarnessError(f"--org {args.org!r} may only contain letters, digits, '.', '_' and '-'")
        missing = next((p for p in args.paths if not Path(p).is_dir()), None)
        if missing:
            raise HarnessError(f"DIR {missing} is not a directory: pass job or sweep directories")
        from launch.collect import collect

        store = open_store(args)
        system = load_system(args.system)
        copied = collect(args.paths, args.org, system, writable_dir(args.into, "--into"))
        for path in copied:
            store.record_log(path, system=system.name)
        store.close()
        print("\n".join(f"collected {p}" for p in copied) or "no finished runs found")
        return 0 if copied else 1
    return 0


def _submit_campaign(job: JobSpec, args: argparse.Namespace) -> int:
    """``submit --runs [N] [--pack]``: the runs a submission needs, recorded
    as one campaign in the results store (local runs: with their results)."""
    from core.benchmark import get_facts
    from launch.campaign import submit_campaign

    runs = args.runs or get_facts(job.benchmark).required_runs
    store = None if args.dry_run else open_store(args)       # refused before anything is queued
    manifest, commands = submit_campaign(job, runs, args.pack, args.dry_run)
    for command in commands:
        print(" ".join(command))
    if store is None:
        return 0
    records = _record_campaign(store, manifest["campaign"], manifest["created"], job, "runs",
                               [Path(entry["dir"]) for entry in manifest["runs"]])
    store.close()
    failed = sum(r is None or r.status != "success" for r in records)
    if job.system.scheduler == "local":     # a run that died before its log counts too
        failed += runs - len(records)
    print(f"campaign {manifest['campaign']}: {runs} run(s) (seeds {manifest['runs'][0]['seed']}-"
          f"{manifest['runs'][-1]['seed']}), {'one packed job' if args.pack else 'one job per run'}; "
          f"manifest {job.job_dir}/campaign.json")
    return 1 if failed else 0


def _record_campaign(store, campaign: str, created: str, job: JobSpec, kind: str, dirs: list[Path]) -> list:
    """A campaign in the results store, with the runs that have finished
    (local jobs ran to the end): one record per log found, None for a log
    that is not a finished run."""
    from mlperf_hpc.provenance import harness_commit
    from mlperf_hpc.results_store import CampaignRecord

    store.record_campaign(CampaignRecord(campaign, created, job.system.name, job.benchmark, kind, len(dirs),
                                         job.job_dir, harness_commit()))
    return [store.record_log(log, system=job.system.name, campaign=campaign) for d in dirs for log in job_logs(d)]


def _campaign_status(args: argparse.Namespace) -> int:
    from launch.campaign import campaign_status

    states = campaign_status(args.campaign, load_system(args.system))
    counts = {s: sum(r.state == s for r in states) for s in ("queued", "running", "finished", "failed")}
    for r in states:
        ttt = f"{r.time_to_train_s / 60:.2f} min" if r.time_to_train_s is not None else "-"
        print(f"run {r.run}  seed {r.seed}  {r.state:9s} time to train {ttt}  job {r.job_id or '-'}")
    print("  ".join(f"{n} {state}" for state, n in counts.items()))
    return 0


def _add_job_options(p: argparse.ArgumentParser, nodes: bool = True) -> None:
    positive = int_in(Valid(minimum=1))
    p.add_argument("--system", required=True, choices=available_systems(),
                   help="the machine (launch/systems/<name>.yaml)")
    p.add_argument("--benchmark", default="cosmoflow", choices=benchmark_names())
    if nodes:
        p.add_argument("--nodes", type=positive, required=True, help="nodes per instance")
    p.add_argument("--layout", default="data", choices=LAYOUTS, help="data, spatial or hybrid")
    p.add_argument("--spatial", help="AxB split of each sample, e.g. 4x1 (spatial/hybrid)")
    p.add_argument("--config", help="benchmark YAML config (default: the benchmark's mini.yaml)")
    p.add_argument("--data", help="dataset directory on the shared file system")
    p.add_argument("--elapse", default="1:00:00", help="wall-clock limit H:MM:SS")
    p.add_argument("--name", default="mlperf-hpc", help="job name")
    p.add_argument("--group", help="group / project charged for the job")
    p.add_argument("--rscgrp", help="resource group / queue (default: the system's)")
    p.add_argument("--ppn", type=positive, help="processes per node (default: the system's)")
    p.add_argument("--instances", type=positive, default=1, help="weak scaling: concurrent instances")
    p.add_argument("--shape", help="Fugaku node shape of the whole job, e.g. 4x3x8")
    p.add_argument("--topology", choices=["torus", "mesh", "noncont"],
                   help="Fugaku node allocation (default: the resource group's: noncont up to 384 nodes, torus above)")
    p.add_argument("--job-dir", help="where the script, placement files and logs go")
    p.add_argument("--seed", type=int_in(Valid(minimum=0, below=2 ** 31)), help="base seed (instance i uses seed + i)")
    p.add_argument("--preflight", action="store_true",
                   help="time a 64 MiB Horovod allreduce over the job's ranks before training (in the job output)")
    p.add_argument("--gate-timeout", type=int_in(Valid(minimum=1, maximum=7 * 86400)), default=1800,
                   help="weak scaling: seconds each instance waits at the start gate for the others (default 1800)")
    p.add_argument("--keep-staged", action="store_true",
                   help="keep the job's private stage directory (systems staging to a shared directory such as "
                        "/tmp make one per job and remove it when the job ends)")


def add_launch_commands(sub: Any) -> None:
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
    submit_p.add_argument("--runs", type=int_in(Valid(minimum=1, maximum=1000)), nargs="?", const=0,
                          help="a campaign of N runs with seeds --seed + i (no N: the benchmark's required "
                               "count, CosmoFlow 10, DeepCAM 5), in DIR/run_i, recorded in DIR/campaign.json")
    submit_p.add_argument("--pack", action="store_true",
                          help="with --runs: all runs back to back in one job (one queue wait)")
    add_store_option(submit_p)
    status_p = launch_sub.add_parser("status", help="the scheduler's view of your jobs",
                                     description="Run the scheduler's status tool and print parsed states.")
    status_p.add_argument("--system", required=True, choices=available_systems())
    status_p.add_argument("job_id", nargs="?")
    status_p.add_argument("--campaign", metavar="DIR", help="a campaign's directory: each run's state and time "
                                                             "to train")
    cancel_p = launch_sub.add_parser("cancel", help="cancel a job", description="Cancel a job.")
    cancel_p.add_argument("--system", required=True, choices=available_systems())
    cancel_p.add_argument("job_id")
    sweep_p = launch_sub.add_parser(
        "sweep", help="one job per node count and layout",
        description="Render (and submit) one job per point of --nodes x --layouts, recorded in a manifest.")
    _add_job_options(sweep_p, nodes=False)
    sweep_p.add_argument("--nodes", dest="nodes_list", required=True, help="comma-separated, e.g. 1,2,4,8")
    sweep_p.add_argument("--layouts", default="data", help="comma-separated, e.g. data,hybrid:4x1")
    sweep_p.add_argument("--render-only", action="store_true", help="write the scripts, submit nothing")
    sweep_p.add_argument("--dry-run", action="store_true", help="print the submit commands only")
    add_store_option(sweep_p)
    collect_p = launch_sub.add_parser(
        "collect", help="copy finished runs' logs into the submission layout",
        description="Copy finished runs' logs (job directories or sweep directories) into "
                    "INTO/<org>/results/<system>/strong|weak/<benchmark>/result_N.txt and write "
                    "INTO/<org>/systems/<system>.json.")
    collect_p.add_argument("paths", nargs="+", metavar="DIR")
    collect_p.add_argument("--system", required=True, choices=available_systems())
    collect_p.add_argument("--org", default="mlperf-hpc")
    collect_p.add_argument("--into", default="logs")
    add_store_option(collect_p)
    launch.set_defaults(func=_cmd_launch)
