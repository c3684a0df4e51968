"""A system is data: one YAML file per machine under launch/systems/."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.config import load_config
from core.errors import HarnessError

SYSTEMS_DIR = Path(__file__).parent / "systems"


@dataclass
class ResourceGroup:
    max_nodes: int = 1
    max_elapse: str = "24:00:00"


@dataclass
class Staging:
    method: str = "directory"       # llio, local_disk, directory
    local_dir: str = "/tmp/mlperf-hpc-stage"
    localtmp_size: str | None = None  # Fugaku: pjsub --llio localtmp-size=


@dataclass
class System:
    name: str = ""
    description: str = ""
    scheduler: str = "local"        # pjm, uge, pbs, local
    launcher: str = "local-mpirun"  # fujitsu-mpiexec, openmpi-mpirun, local-mpirun
    cores_per_node: int = 1
    accelerators_per_node: int = 0
    processor: str = ""
    accelerator: str = ""
    default_procs_per_node: int = 1
    max_procs_per_node: int = 1
    group_required: bool = False
    default_resource_group: str = ""
    resource_groups: dict[str, ResourceGroup] = field(default_factory=dict)
    frequency_mhz: int | None = None
    llio_gfscache: str | None = None
    setup: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    staging: Staging = field(default_factory=Staging)


def available_systems() -> list[str]:
    return sorted(p.stem for p in SYSTEMS_DIR.glob("*.yaml"))


def load_system(name: str) -> System:
    path = SYSTEMS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise HarnessError(f"unknown system '{name}': use one of {', '.join(available_systems())} "
                           f"(or add launch/systems/{name}.yaml)")
    return load_config(path, System)
