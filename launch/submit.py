"""Submitting rendered jobs, asking after them, and sweeps."""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from launch.job import JobSpec
from launch.render import render
from launch.schedulers import JobState, get_scheduler
from launch.system import System
from parallel.topology import layout_split
from core.errors import HarnessError


# How long a scheduler tool may take to answer (a hung pjstat or sbatch must
# not hang the harness); MLPERF_HPC_TOOL_TIMEOUT overrides it, in seconds.
TOOL_TIMEOUT_SECONDS = 120.0


def _run(command: list[str]) -> str:
    """A scheduler tool's output; every way it can fail is one line."""
    timeout = float(os.environ.get("MLPERF_HPC_TOOL_TIMEOUT") or TOOL_TIMEOUT_SECONDS)
    try:
        # LC_ALL=C: the tools' replies are parsed, in English and C formats.
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, errors="replace",
                              env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise HarnessError(f"'{command[0]}' not found: run this on a login node of the system") from None
    except PermissionError:
        raise HarnessError(f"'{command[0]}' on PATH cannot be run (not executable): fix PATH or the file's "
                           f"permissions") from None
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{' '.join(command)} did not answer within {timeout:g} s: the scheduler may be busy; "
                           f"try again later") from None
    except OSError as err:
        raise HarnessError(f"'{command[0]}' could not be run ({err.strerror or err})") from None
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[:300]}")
    return done.stdout


JOB_RECORD = "job_id"     # in a job directory: the job submitted from it
ACTIVE_STATES = ("queued", "running", "held")


def _job_active(job: JobSpec, job_id: str) -> bool:
    if job_id.startswith("local-pid:"):
        pid = job_id.partition(":")[2]
        if not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:    # alive, another user's
            return True
        return not (Path(job.job_dir) / "exit_code").exists()
    try:
        return any(j.job_id == job_id and j.state in ACTIVE_STATES for j in status(job.system, job_id))
    except HarnessError as err:
        raise HarnessError(f"--job-dir {job.job_dir} holds job {job_id}, whose state cannot be read ({err}): "
                           f"pass a new --job-dir") from None


def write_job(job: JobSpec) -> Path:
    """Render the job and write its script and placement files, unless the
    job directory belongs to a job still queued or running (its script and
    placement files would change under it); returns the script's path."""
    record = Path(job.job_dir) / JOB_RECORD
    if record.is_file():
        job_id = record.read_text().strip()
        if _job_active(job, job_id):
            raise HarnessError(f"--job-dir {job.job_dir} belongs to job {job_id}, which is still queued or running: "
                               f"pass a new --job-dir, or wait for it to end")
    return render(job).write(job.job_dir)


def submit(job: JobSpec, dry_run: bool = False) -> tuple[list[str], str | None]:
    """Write the job's script and submit it; returns the exact command line
    and the job id (None on a dry run). Local jobs run to completion here."""
    scheduler = get_scheduler(job.system.scheduler)
    if not dry_run and job.data_dir and not Path(job.data_dir).is_dir():
        raise HarnessError(f"--data {job.data_dir} is not a directory here: the job would fail when it starts; "
                           f"pass the dataset's path on the shared file system")
    command = scheduler.submit_command(job, str(write_job(job)))
    if dry_run:
        return command, None
    record = Path(job.job_dir) / JOB_RECORD
    if scheduler.name == "local":
        record.write_text(f"local-pid:{os.getpid()}\n")
        with open(Path(job.job_dir) / "job.out", "w") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        (Path(job.job_dir) / "exit_code").write_text(f"{code}\n")
        return command, f"local:{job.job_dir}"
    before = _job_ids_named(job)
    reply = _run(command)
    try:
        job_id = scheduler.parse_submit(reply)
    except HarnessError as err:
        job_id = _found_by_name(job, before, err)
    record.write_text(f"{job_id}\n")
    return command, job_id


def _job_ids_named(job: JobSpec) -> set[str] | None:
    """The ids of the user's jobs called ``job.name`` (None: unknown)."""
    try:
        return {j.job_id for j in status(job.system) if j.name == job.name}
    except HarnessError:
        return None


def _found_by_name(job: JobSpec, before: set[str] | None, error: HarnessError) -> str:
    """The job a submit queued although its reply could not be read: the one
    job of its name that was not there before. Saying "failed" instead would
    invite a second, duplicate submission."""
    after = _job_ids_named(job)
    new = sorted(after - before) if after is not None and before is not None else []
    if len(new) == 1:
        return new[0]
    raise HarnessError(f"{error}; the job may still have been queued, and it could not be found by its name "
                       f"{job.name!r}: check 'mlperf-hpc launch status --system {job.system.name}' before "
                       f"submitting again")


def status(system: System, job_id: str | None = None, output: str | None = None) -> list[JobState]:
    """The scheduler's view of the user's jobs (or one job)."""
    scheduler = get_scheduler(system.scheduler)
    scheduler.check_job_id(job_id)
    return scheduler.parse_status(output if output is not None else _run(scheduler.status_command(job_id)))


def cancel(system: System, job_id: str) -> list[str]:
    scheduler = get_scheduler(system.scheduler)
    command = scheduler.cancel_command(scheduler.check_job_id(job_id))
    _run(command)
    return command


def parse_layouts(text: str) -> list[tuple[str, str | None]]:
    """'data,hybrid:4x1' -> [('data', None), ('hybrid', '4x1')]"""
    out = []
    for item in text.split(","):
        layout, colon, split = item.strip().partition(":")
        try:
            layout_split(layout, split if colon else None)
        except HarnessError as err:
            raise HarnessError(f"--layouts '{text}': {err} (write each point as layout or layout:AxB)") from None
        out.append((layout, split if colon else None))
    return out


def sweep(base: JobSpec, nodes: list[int], layouts: list[tuple[str, str | None]], sweep_dir: str | Path,
          do_submit: bool, dry_run: bool) -> dict:
    """One job per (nodes, layout) point, recorded in sweep_dir/manifest.json.
    Every point is validated before anything is submitted."""
    sweep_dir = Path(sweep_dir)
    jobs = []
    for n in nodes:
        for layout, split in layouts:
            point = f"{layout}{'-' + split if split else ''}-n{n}"
            jobs.append(replace(base, nodes=n, layout=layout, spatial=split, name=f"{base.name}-{point}",
                                job_dir=str(sweep_dir / point)).validate())
    manifest = {"system": base.system.name, "benchmark": base.benchmark, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "points": []}
    for job in jobs:
        entry = {"nodes": job.nodes, "layout": job.layout, "spatial": job.spatial, "processes": job.processes,
                 "instances": job.instances, "job_dir": job.job_dir, "script": f"{job.job_dir}/job.sh"}
        if do_submit:
            command, job_id = submit(job, dry_run)
            entry.update(command=command, job_id=job_id)
        else:
            write_job(job)
        manifest["points"].append(entry)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
