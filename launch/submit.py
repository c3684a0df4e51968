"""Submitting rendered jobs, asking after them, sweeps, and collecting
finished runs' logs into the MLPerf HPC submission layout."""
from __future__ import annotations

import json
import shutil
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
from core.runlog import read_run_log


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise HarnessError(f"'{command[0]}' not found: run this on a login node of the system") from None
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[:300]}")
    return done.stdout


def submit(job: JobSpec, dry_run: bool = False) -> tuple[list[str], str | None]:
    """Write the job's script and submit it; returns the exact command line
    and the job id (None on a dry run). Local jobs run to completion here."""
    rendered = render(job)
    scheduler = get_scheduler(job.system.scheduler)
    if not dry_run and job.data_dir and not Path(job.data_dir).is_dir():
        raise HarnessError(f"--data {job.data_dir} is not a directory here: the job would fail when it starts; "
                           f"pass the dataset's path on the shared file system")
    command = scheduler.submit_command(job, str(rendered.write(job.job_dir)))
    if dry_run:
        return command, None
    if scheduler.name == "local":
        with open(Path(job.job_dir) / "job.out", "w") as out:
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
        (Path(job.job_dir) / "exit_code").write_text(f"{code}\n")
        return command, f"local:{job.job_dir}"
    return command, scheduler.parse_submit(_run(command))


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
            render(job).write(job.job_dir)
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


def collect(paths: list[str | Path], org: str, system: System, into: str | Path = "logs") -> list[Path]:
    """Copy every finished run's log (one with run_stop) into
    ``into/<org>/results/<system>/<strong|weak>/<benchmark>/result_N.txt``."""
    root = Path(into) / org
    copied, divisions, max_nodes = [], set(), 0
    for path in paths:
        for job_dir in _job_dirs(Path(path)):
            logs = sorted(job_dir.glob("instance_*.log")) or sorted(job_dir.glob("result.log"))
            finished = [(log, read_run_log(log)) for log in logs]
            finished = [(log, run) for log, run in finished if run.run_stop_ms is not None]
            scaling = "weak" if any(run.instance_id is not None for _, run in finished) else "strong"
            for log, run in finished:
                target = root / "results" / system.name / scaling / run.benchmark
                target.mkdir(parents=True, exist_ok=True)
                index = len(list(target.glob("result_*.txt")))
                dst = target / f"result_{index}.txt"
                shutil.copyfile(log, dst)
                copied.append(dst)
                divisions.add(run.division)
                max_nodes = max(max_nodes, run.nodes * (len(finished) if scaling == "weak" else 1))
    if copied:
        (root / "systems").mkdir(parents=True, exist_ok=True)
        description = system_description(system, "closed" if divisions == {"closed"} else "open", org, max_nodes)
        (root / "systems" / f"{system.name}.json").write_text(json.dumps(description, indent=2))
    return copied
