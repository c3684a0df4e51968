"""Job scripts rendered from a validated JobSpec: the scheduler's directives,
the system's setup and environment, staging, and one launch per instance.
Every user-supplied value in the script body is shell-quoted; directives only
carry values the validation restricted to safe characters."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from launch.binding import WRAPPER, wrapper_script
from launch.job import JobSpec
from launch.launchers import get_launcher
from launch.schedulers import get_scheduler
from parallel.topology import SPLIT_LAYOUTS

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "parallel", "cosmoflow", "deepcam", "launch", "mlperf_hpc")   # the harness's own code
PREFLIGHT = ["python", "-m", "mlperf_hpc.cli", "preflight", "--megabytes", "64"]


@dataclass
class RenderedJob:
    script: str
    files: dict[str, str]      # placement files, relative to the job directory

    def write(self, job_dir: str | Path) -> Path:
        job_dir = Path(job_dir)
        job_dir.mkdir(parents=True, exist_ok=True)
        for name, text in self.files.items():
            (job_dir / name).write_text(text)
        path = job_dir / "job.sh"
        path.write_text(self.script)
        path.chmod(0o755)
        return path


def _wrapper(job: JobSpec) -> str | None:
    """The per-rank binding wrapper, where the system binds and its launcher does not."""
    return None if get_launcher(job.system.launcher).binds_ranks else wrapper_script(job.system, job.ppn)


def _rank_command(job: JobSpec, words: list[str]) -> list[str]:
    """A rank's command, through the binding wrapper where there is one."""
    if _wrapper(job) is None:
        return words
    return ["bash", f"{job.job_dir}/{WRAPPER}", *words]


def program(job: JobSpec, instance: int, run: int = 0) -> list[str]:
    """The training command one instance's ranks run (in a packed campaign,
    the command of its run ``run``)."""
    words = ["python", "-m", "mlperf_hpc.cli", "train", job.benchmark, "--layout", job.layout]
    if job.layout in SPLIT_LAYOUTS:
        words += ["--spatial", job.spatial]
    if job.config:
        words += ["--config", job.config]
    if job.data_dir:
        words += ["--data", job.data_dir]
    words += ["--stage-dir", "STAGE_DIR", "--log", str(job.log_path(instance, run))]
    if job.seed is not None:
        words += ["--seed", str(job.seed + instance + run)]
    if job.instances > 1:
        words += ["--instances", str(job.instances), "--instance-id", str(instance),
                  "--start-gate", f"{job.job_dir}/gate", "--gate-timeout", str(job.gate_timeout)]
    return _rank_command(job, words)


def _shell(words: list[str]) -> str:
    # The stage directory comes from the system's YAML and may name the
    # scheduler's variables ($PJM_LOCALTMP, $SGE_LOCALDIR): expand it.
    return " ".join('"$STAGE_DIR"' if w == "STAGE_DIR" else shlex.quote(w) for w in words)


# Weak scaling: the first instance to fail ends the job within seconds
# (instead of the others waiting at the start gate, then the job for all of
# them); its launcher's SIGTERM makes the others' ranks write run_stop
# aborted. The exit status is 100 + the failed instance's number (255 from
# instance 155 on), and a line names it. Plain polling: Fugaku's bash 4.4
# has no 'wait -n -p'.
WATCH_INSTANCES = [
    'failed=""',
    'while :; do',
    '    running=0',
    '    for i in "${!pids[@]}"; do',
    '        pid=${pids[$i]}',
    '        [ -n "$pid" ] || continue',
    '        if kill -0 "$pid" 2>/dev/null; then running=1; continue; fi',
    '        code=0; wait "$pid" || code=$?',
    '        pids[$i]=""',
    '        if [ "$code" -ne 0 ] && [ -z "$failed" ]; then',
    '            failed=$i',
    '            echo "mlperf-hpc: instance $i failed (exit $code): stopping the other instances" >&2',
    '            for other in "${pids[@]}"; do [ -z "$other" ] || kill -TERM "$other" 2>/dev/null || true; done',
    '        fi',
    '    done',
    '    [ "$running" = 1 ] || break',
    '    sleep 2',
    'done',
    '[ -z "$failed" ] || { echo "mlperf-hpc: weak-scaling job failed: instance $failed" >&2; '
    'exit $(( failed < 155 ? 100 + failed : 255 )); }',
]


def render(job: JobSpec) -> RenderedJob:
    job.validate()
    system = job.system
    scheduler = get_scheduler(system.scheduler)
    launcher = get_launcher(system.launcher)
    q = shlex.quote
    lines = ["#!/bin/bash", *scheduler.directives(job),
             f"# mlperf-hpc: {job.benchmark} on {system.name}, {job.instances} x {job.nodes} node(s) x "
             f"{job.ppn} process(es), layout {job.layout}{' ' + job.spatial if job.spatial else ''}, "
             f"{job.scaling} scaling",
             "set -euo pipefail",
             f"export MLPERF_HPC_HOME={q(str(REPO))}",
             *system.setup,
             *(f"export {name}={q(value)}" for name, value in sorted(job.env.items())),
             f"JOB_DIR={q(job.job_dir)}",
             'mkdir -p "$JOB_DIR"']
    if system.staging.method == "directory":
        # A directory any user can write to (/tmp): a fresh one of this job's
        # own (mktemp: mode 0700, an unguessable name), removed at the end.
        # The schedulers' node-local directories are the job's already.
        lines.append(f'STAGE_DIR=$(mktemp -d "{system.staging.local_dir}.XXXXXXXX")')
        if not job.keep_staged:
            lines.append("trap 'rm -rf -- \"$STAGE_DIR\"' EXIT")
    else:
        lines.append(f'STAGE_DIR="{system.staging.local_dir}"')
    lines += scheduler.job_setup(job, PACKAGES)
    lines += launcher.prepare(job, scheduler.hostfile_var)
    # Provenance: what ran, in the job's own output.
    lines.append("python -m mlperf_hpc.cli version")
    if job.preflight:
        lines.append(_shell(launcher.command(job, 0, _rank_command(job, PREFLIGHT))))
    if job.instances > 1:
        lines.append('mkdir -p "$JOB_DIR/gate"')
        lines.append("pids=()")
        for i in range(job.instances):
            lines.append(_shell(launcher.command(job, i, program(job, i))) + " &")
            lines.append("pids+=($!)")
        lines += WATCH_INSTANCES
    elif job.runs > 1:
        # A packed campaign: one queue wait, the runs back to back; a run that
        # fails is reported and the next one still runs.
        lines.append("status=0")
        for run in range(job.runs):
            lines.append(_shell(launcher.command(job, 0, program(job, 0, run)))
                         + f' || {{ echo "mlperf-hpc: run {run} failed" >&2; status=1; }}')
        lines.append('exit "$status"')
    else:
        lines.append(_shell(launcher.command(job, 0, program(job, 0))))
    files = launcher.files(job)
    wrapper = _wrapper(job)
    if wrapper is not None:
        files[WRAPPER] = wrapper
    return RenderedJob("\n".join(lines) + "\n", files)
