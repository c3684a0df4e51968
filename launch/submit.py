"""Submitting rendered jobs, asking after them, sweeps, and collecting
finished runs' logs into the MLPerf HPC submission layout."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from launch.job import SAFE_NAME, JobSpec
from launch.render import render
from launch.schedulers import JobState, get_scheduler
from launch.system import System
from parallel.topology import layout_split
from core.errors import HarnessError
from core.runlog import read_run_log


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise HarnessError(f"'{command[0]}' not found: run this on a login node of the system") from None
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
    job_id = scheduler.parse_submit(_run(command))
    record.write_text(f"{job_id}\n")
    return command, job_id


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


def _job_dirs(path: Path) -> list[Path]:
    manifest = path / "manifest.json"
    if manifest.is_file():
        return [Path(p["job_dir"]) for p in json.loads(manifest.read_text())["points"]]
    return [path]


def system_description(system: System, division: str, org: str, nodes: int) -> dict:
    """systems/<system>.json in the fields the MLPerf system-description checker reads."""
    return {"submitter": org, "division": division, "status": "onprem", "system_name": system.description,
            "number_of_nodes": str(nodes), "host_processors_per_node": "1",
            "host_processor_model_name": system.processor, "host_processor_core_count": str(system.cores_per_node),
            "accelerators_per_node": str(system.accelerators_per_node),
            "accelerator_model_name": system.accelerator or "N/A", "framework": "TensorFlow 2.15.1, Horovod 0.28.1",
            "operating_system": "", "host_memory_capacity": "", "host_storage_type": "", "host_storage_capacity": "",
            "host_networking": "", "host_networking_topology": "", "host_memory_configuration": "",
            "accelerator_host_interconnect": "", "accelerator_frequency": "", "accelerator_on-chip_memories": "",
            "accelerator_memory_configuration": "", "accelerator_memory_capacity": "",
            "accelerator_interconnect": "", "accelerator_interconnect_topology": "",
            "cooling": "", "hw_notes": "", "other_software_stack": "", "sw_notes": ""}


RESULT_NAME = re.compile(r"^result_(\d+)\.txt$")


def _content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, every link in it followed, lies under ``root``."""
    return path.resolve().is_relative_to(root.resolve())


def _copy_new(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, which must not exist yet (not even as a
    link): what a user collected is never written over or through."""
    data = src.read_bytes()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _merge_system_json(path: Path, fresh: dict) -> None:
    """Fill what the file lacks or leaves empty from ``fresh``; what a user
    wrote there stays, except the node count, which grows to the largest
    collected run's."""
    try:
        merged = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        merged = None
    if not isinstance(merged, dict):
        raise HarnessError(f"{path} is not a readable JSON object: fix or remove it, then collect again")
    for key, value in fresh.items():
        if merged.get(key) in (None, ""):
            merged[key] = value
    if str(merged.get("number_of_nodes", "")).isdigit():
        merged["number_of_nodes"] = str(max(int(merged["number_of_nodes"]), int(fresh["number_of_nodes"])))
    if fresh["division"] == "open":
        merged["division"] = "open"   # one open run makes the system's submission open
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps(merged, indent=2))
    tmp.replace(path)


def collect(paths: list[str | Path], org: str, system: System, into: str | Path = "logs") -> list[Path]:
    """Copy every finished run's log (one with run_stop) into
    ``into/<org>/results/<system>/<strong|weak>/<benchmark>/result_N.txt``,
    numbered after the highest result already there. A log whose content is
    already in its folder is skipped, so collecting twice changes nothing;
    nothing is written over, and no link is followed out of a job directory
    or into the tree."""
    into = Path(into)
    root = into / org
    copied, divisions, max_nodes = [], set(), 0
    for path in paths:
        for job_dir in _job_dirs(Path(path)):
            logs = sorted(job_dir.glob("instance_*.log")) or sorted(job_dir.glob("result.log"))
            logs = [log for log in logs if not log.is_symlink() and _inside(log, job_dir)]
            finished = [(log, read_run_log(log)) for log in logs]
            finished = [(log, run) for log, run in finished if run.run_stop_ms is not None and run.benchmark]
            scaling = "weak" if any(run.instance_id is not None for _, run in finished) else "strong"
            for log, run in finished:
                if not SAFE_NAME.match(run.benchmark):
                    continue          # a benchmark name that is not a plain word names no folder
                target = root / "results" / system.name / scaling / run.benchmark
                target.mkdir(parents=True, exist_ok=True)
                if not _inside(target, into):
                    raise HarnessError(f"{target} leads out of --into {into} through a link: remove the link")
                existing = [p for p in target.iterdir() if RESULT_NAME.match(p.name)]
                digest = _content_hash(log)
                if any(p.is_file() and not p.is_symlink() and _content_hash(p) == digest for p in existing):
                    continue
                index = max((int(RESULT_NAME.match(p.name).group(1)) for p in existing), default=-1) + 1
                dst = target / f"result_{index}.txt"
                _copy_new(log, dst)
                copied.append(dst)
                divisions.add(run.division)
                max_nodes = max(max_nodes, run.nodes * (len(finished) if scaling == "weak" else 1))
    if copied:
        (root / "systems").mkdir(parents=True, exist_ok=True)
        description = system_description(system, "closed" if divisions == {"closed"} else "open", org, max_nodes)
        _merge_system_json(root / "systems" / f"{system.name}.json", description)
    return copied
