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


def _rank_command(job: JobSpec, words: list[str]) -> list[str]:
    """A rank's command, through the binding wrapper where the system binds."""
    if wrapper_script(job.system, job.ppn) is None:
        return words
    return ["bash", f"{job.job_dir}/{WRAPPER}", *words]


def program(job: JobSpec, instance: int) -> list[str]:
    """The training command one instance's ranks run."""
    words = ["python", "-m", "mlperf_hpc.cli", "train", job.benchmark, "--layout", job.layout]
    if job.layout in SPLIT_LAYOUTS:
        words += ["--spatial", job.spatial]
    if job.config:
        words += ["--config", job.config]
    if job.data_dir:
        words += ["--data", job.data_dir]
    words += ["--stage-dir", "STAGE_DIR", "--log", str(job.log_path(instance))]
    if job.seed is not None:
        words += ["--seed", str(job.seed + instance)]
    if job.instances > 1:
        words += ["--instances", str(job.instances), "--instance-id", str(instance),
                  "--start-gate", f"{job.job_dir}/gate"]
    return _rank_command(job, words)


def _shell(words: list[str]) -> str:
    # The stage directory comes from the system's YAML and may name the
    # scheduler's variables ($PJM_LOCALTMP, $SGE_LOCALDIR): expand it.
    return " ".join('"$STAGE_DIR"' if w == "STAGE_DIR" else shlex.quote(w) for w in words)


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
    if system.distribute_environment:
        # Thousands of Python files imported by every rank: one copy in the
        # nodes' second-layer cache instead of every node reading the shared FS.
        lines.append(f'{system.distribute_environment} "$MLPERF_HPC_HOME/.venv" '
                     + " ".join(f'"$MLPERF_HPC_HOME/{package}"' for package in PACKAGES))
    if system.staging.method == "llio" and job.config:
        # Common files are read by every rank: LLIO's transfer puts one copy
        # in the second-layer cache instead of every rank hitting the FS.
        lines.append(f"llio_transfer {q(job.config)}")
    lines += launcher.prepare(job, scheduler.hostfile_var)
    # Provenance: what ran, in the job's own output.
    lines.append("python -m mlperf_hpc.cli version")
    if job.preflight:
        lines.append(_shell(launcher.command(job, 0, _rank_command(job, PREFLIGHT))))
    if job.instances > 1:
        lines.append('mkdir -p "$JOB_DIR/gate"')
        for i in range(job.instances):
            lines.append(_shell(launcher.command(job, i, program(job, i))) + " &")
        lines += ["status=0", "for pid in $(jobs -p); do wait \"$pid\" || status=1; done", 'exit "$status"']
    else:
        lines.append(_shell(launcher.command(job, 0, program(job, 0))))
    files = launcher.files(job)
    wrapper = wrapper_script(system, job.ppn)
    if wrapper is not None:
        files[WRAPPER] = wrapper
    return RenderedJob("\n".join(lines) + "\n", files)
