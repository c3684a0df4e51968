"""Collecting finished runs' logs into the MLPerf HPC submission layout,
``<into>/<org>/results/<system>/strong|weak/<benchmark>/result_N.txt`` with
``<org>/systems/<system>.json``, without ever writing over what a user
already collected."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from core.errors import HarnessError
from core.runlog import read_run_log
from launch.campaign import CAMPAIGN_FILE, run_dirs
from launch.job import SAFE_NAME, job_logs
from launch.system import System


def _job_dirs(path: Path) -> list[Path]:
    """The directories a job, sweep or campaign directory's logs are in."""
    if (path / CAMPAIGN_FILE).is_file():
        return run_dirs(path)
    manifest = path / "manifest.json"
    if manifest.is_file():
        try:
            return [Path(p["job_dir"]) for p in json.loads(manifest.read_text())["points"]]
        except (OSError, ValueError, KeyError, TypeError):
            raise HarnessError(f"{manifest} is not a readable sweep manifest: pass the directory 'launch sweep' "
                               f"wrote") from None
    return [path]


# What a system description must hold (the MLPerf system-description
# checker refuses a file that lacks any of them).
SYSTEM_FIELDS = ("submitter", "division", "status", "system_name", "number_of_nodes", "host_processors_per_node",
                 "host_processor_model_name", "host_processor_core_count", "host_processor_vcpu_count",
                 "host_processor_frequency", "host_processor_caches", "host_processor_interconnect",
                 "host_memory_capacity", "host_storage_type", "host_storage_capacity", "host_networking",
                 "host_networking_topology", "host_memory_configuration", "accelerators_per_node",
                 "accelerator_model_name", "accelerator_host_interconnect", "accelerator_frequency",
                 "accelerator_on-chip_memories", "accelerator_memory_configuration", "accelerator_memory_capacity",
                 "accelerator_interconnect", "accelerator_interconnect_topology", "cooling", "hw_notes", "framework",
                 "other_software_stack", "operating_system", "sw_notes")


def system_description(system: System, division: str, org: str, nodes: int) -> dict:
    """systems/<system>.json: every field the system-description checker
    reads, from the system YAML (its ``system_description`` section holds
    what only the site knows: memory, storage, network, cooling)."""
    derived = {"submitter": org, "division": division, "status": "onprem", "system_name": system.description,
               "number_of_nodes": str(nodes), "host_processor_model_name": system.processor,
               "host_processor_core_count": str(system.cores_per_node),
               "accelerators_per_node": str(system.accelerators_per_node),
               "accelerator_model_name": system.accelerator or "N/A",
               "framework": "TensorFlow 2.15.1, Horovod 0.28.1, Mesh TensorFlow 0.1.21"}
    return {name: derived.get(name, system.system_description.get(name, "")) for name in SYSTEM_FIELDS}


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
    held: dict[Path, tuple[int, set[str]]] = {}     # per results folder: highest index, content hashes
    for path in paths:
        for job_dir in _job_dirs(Path(path)):
            logs = [log for log in job_logs(job_dir) if not log.is_symlink() and _inside(log, job_dir)]
            finished = [(log, read_run_log(log)) for log in logs]
            finished = [(log, run) for log, run in finished if run.run_stop_ms is not None and run.benchmark]
            scaling = "weak" if any(run.instance_id is not None for _, run in finished) else "strong"
            for log, run in finished:
                if not SAFE_NAME.match(run.benchmark):
                    continue          # a benchmark name that is not a plain word names no folder
                target = root / "results" / system.name / scaling / run.benchmark
                if not _inside(target, into):       # before mkdir, which would follow the link
                    raise HarnessError(f"{target} leads out of --into {into} through a link: remove the link")
                target.mkdir(parents=True, exist_ok=True)
                if target not in held:
                    existing = [p for p in target.iterdir() if RESULT_NAME.match(p.name)]
                    held[target] = (max((int(RESULT_NAME.match(p.name).group(1)) for p in existing), default=-1),
                                    {_content_hash(p) for p in existing if p.is_file() and not p.is_symlink()})
                highest, hashes = held[target]
                digest = _content_hash(log)
                if digest in hashes:
                    continue
                dst = target / f"result_{highest + 1}.txt"
                _copy_new(log, dst)
                held[target] = (highest + 1, hashes | {digest})
                copied.append(dst)
                divisions.add(run.division)
                max_nodes = max(max_nodes, run.nodes * (len(finished) if scaling == "weak" else 1))
    if copied:
        (root / "systems").mkdir(parents=True, exist_ok=True)
        description = system_description(system, "closed" if divisions == {"closed"} else "open", org, max_nodes)
        _merge_system_json(root / "systems" / f"{system.name}.json", description)
    return copied
