"""Campaigns: the runs a submission needs (10 CosmoFlow, 5 DeepCAM strong-
scaling runs), submitted in one command with distinct seeds (base seed + i)
and otherwise identical jobs, either one job per run or ``--pack``ed back to
back into one allocation (one queue wait, like NVIDIA's NEXP loop).

``campaign.json`` in the campaign's directory records every run (seed, job
id, the directory its log lands in), so that status and collect find them
all and a submit that stops half way loses nothing it already queued.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import HarnessError
from core.runlog import read_run_log
from launch.job import JobSpec
from launch.schedulers import get_scheduler
from launch.submit import ACTIVE_STATES, status, submit

CAMPAIGN_FILE = "campaign.json"


def plan(base: JobSpec, runs: int, pack: bool) -> tuple[list[JobSpec], dict]:
    """The campaign's jobs, every one validated, and its manifest."""
    if base.instances > 1:
        raise HarnessError("--runs submits a strong-scaling campaign: leave out --instances")
    seed = base.seed if base.seed is not None else int.from_bytes(os.urandom(4), "little") % (2 ** 31 - runs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if pack:
        jobs = [replace(base, runs=runs, seed=seed).validate()]
        dirs = [str(Path(base.job_dir) / f"run_{i}") for i in range(runs)]
    else:
        jobs = [replace(base, seed=seed + i, name=f"{base.name}-r{i}", job_dir=str(Path(base.job_dir) / f"run_{i}"))
                .validate() for i in range(runs)]
        dirs = [job.job_dir for job in jobs]
    manifest = {"campaign": f"{base.name}-{stamp}", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "system": base.system.name, "benchmark": base.benchmark, "pack": pack,
                "runs": [{"run": i, "seed": seed + i, "dir": dirs[i], "job_id": None} for i in range(runs)]}
    return jobs, manifest


def _write_manifest(job_dir: str, manifest: dict) -> None:
    path = Path(job_dir) / CAMPAIGN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CAMPAIGN_FILE}.{os.getpid()}.part")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path)


def submit_campaign(base: JobSpec, runs: int, pack: bool, dry_run: bool = False) -> tuple[dict, list[list[str]]]:
    """Submit (or, on a dry run, write and print) every job of the campaign;
    returns its manifest and the exact submit command of each job."""
    if (Path(base.job_dir) / CAMPAIGN_FILE).exists():
        raise HarnessError(f"--job-dir {base.job_dir} already holds a campaign ({CAMPAIGN_FILE}): pass a new "
                           f"--job-dir")
    jobs, manifest = plan(base, runs, pack)
    commands = []
    if not dry_run:
        _write_manifest(base.job_dir, manifest)
    for index, job in enumerate(jobs):
        command, job_id = submit(job, dry_run)
        commands.append(command)
        for entry in manifest["runs"] if pack else [manifest["runs"][index]]:
            entry["job_id"] = job_id
        if not dry_run:
            _write_manifest(base.job_dir, manifest)      # after every job: nothing queued is forgotten
    return manifest, commands


def read_manifest(path: str | Path) -> dict:
    path = Path(path) / CAMPAIGN_FILE
    try:
        manifest = json.loads(path.read_text())
        runs = manifest["runs"]
        if not isinstance(runs, list) or not all(isinstance(r, dict) and {"run", "seed", "dir"} <= set(r)
                                                 for r in runs):
            raise ValueError("runs")
        manifest["pack"] = bool(manifest.get("pack"))
        return manifest
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise HarnessError(f"{path} is not a readable campaign manifest ({type(err).__name__}): pass the "
                           f"directory 'launch submit --runs' wrote") from None


@dataclass
class RunState:
    run: int
    seed: int
    job_id: str | None
    state: str                      # queued, running, finished, failed
    time_to_train_s: float | None
    log: Path


def campaign_status(path: str | Path, system) -> list[RunState]:
    """Each run's state: from its log once it ended (run_stop success:
    finished; aborted, or a job gone without a run_stop: failed), else from
    the scheduler (queued, running)."""
    manifest = read_manifest(path)
    active: dict[str, str] = {}            # one question to the scheduler, for every job of the user
    if get_scheduler(system.scheduler).name != "local" and any(r.get("job_id") for r in manifest["runs"]):
        active = {j.job_id: j.state for j in status(system) if j.state in ACTIVE_STATES}
    out = []
    for entry in manifest["runs"]:
        log = Path(entry["dir"]) / "result.log"
        run = read_run_log(log) if log.is_file() else None
        job_state = active.get(str(entry.get("job_id")))
        if run is not None and run.run_stop_ms is not None:
            state = "finished" if run.status == "success" else "failed"
        elif job_state is not None:      # a packed run waits for the ones before it
            state = "running" if run is not None or (job_state == "running" and not manifest["pack"]) else "queued"
        elif entry.get("job_id") is None:
            state = "not submitted"
        else:                            # its job ended without the run's run_stop
            state = "failed"
        out.append(RunState(entry["run"], entry["seed"], entry.get("job_id"), state,
                            run.time_to_train_s if run is not None and state == "finished" else None, log))
    return out


def run_dirs(path: str | Path) -> list[Path]:
    """The directories a campaign's logs land in."""
    return [Path(r["dir"]) for r in read_manifest(path)["runs"]]

