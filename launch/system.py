"""A system is data: one YAML file per machine under launch/systems/,
checked when it is loaded like any config (declared ranges, known keys)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.config import ranged, load_config
from core.errors import HarnessError

SYSTEMS_DIR = Path(__file__).parent / "systems"
ALLOCATIONS = ("noncont", "mesh", "torus")     # Fugaku's node allocation modes


@dataclass
class ResourceGroup:
    min_nodes: int = ranged(1, minimum=1)
    max_nodes: int = ranged(1, minimum=1)
    max_elapse: str = "24:00:00"
    # Fugaku: the allocation modes the group accepts, the first being its default.
    allocations: list[str] = ranged(factory=lambda: list(ALLOCATIONS), one_of=ALLOCATIONS)


@dataclass
class Staging:
    method: str = ranged("directory", one_of=("llio", "local_disk", "directory"))
    local_dir: str = "/tmp/mlperf-hpc-stage"


@dataclass
class PJMSettings:
    """What only Fujitsu's job manager (Fugaku) reads: its CPU frequency, LLIO
    caching and node-local space, and how it distributes the environment."""
    frequency_mhz: int | None = ranged(None, minimum=1)
    llio_gfscache: str | None = None
    localtmp_gib: int | None = ranged(None, minimum=1)      # LLIO node-local temporary space a job asks for
    max_localtmp_gib: int | None = ranged(None, minimum=1)  # and the most the system grants
    # Distribute the Python environment and the harness to the nodes' cache
    # (dir_transfer) instead of every node reading the shared file system.
    distribute_environment: str | None = None


@dataclass
class Binding:
    """How each local rank of a node is placed: the NUMA nodes (CPU and
    memory) of the node's compute cores, and per accelerator the network
    adapter next to it. A rank's share follows from its local rank."""
    numa_nodes: list[int] = field(default_factory=list)   # e.g. Fugaku's 4 CMGs: NUMA nodes 4-7
    hcas: list[str] = field(default_factory=list)         # per accelerator (or per rank), e.g. mlx5_0


@dataclass
class Reference:
    """An expected figure with its tolerance, as ReFrame writes them: the
    training samples/s per node a layout should reach, and how far below
    (``lower``, a fraction <= 0) or above (``upper``, >= 0; null: no bound)
    a run may fall before it is flagged."""
    target: float = ranged(1.0, above=0)
    lower: float = ranged(-0.1, minimum=-1, maximum=0)
    upper: float | None = ranged(None, minimum=0)


@dataclass
class System:
    name: str = ""
    description: str = ""
    # Names in the registries (launch/schedulers.py, launch/launchers.py),
    # which get_scheduler / get_launcher check: a new backend is one class.
    scheduler: str = "local"
    launcher: str = "local-mpirun"
    cores_per_node: int = ranged(1, minimum=1)
    accelerators_per_node: int = ranged(0, minimum=0)
    processor: str = ""
    accelerator: str = ""
    default_procs_per_node: int = ranged(1, minimum=1)
    max_procs_per_node: int = ranged(1, minimum=1)
    group_required: bool = False
    default_resource_group: str = ""
    resource_groups: dict[str, ResourceGroup] = field(default_factory=dict)
    max_job_nodes: int | None = ranged(None, minimum=1)   # the system's largest job, over every group
    setup: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mpi_args: list[str] = field(default_factory=list)     # the launcher's transport settings
    binding: Binding = field(default_factory=Binding)
    staging: Staging = field(default_factory=Staging)
    pjm: PJMSettings = field(default_factory=PJMSettings)
    # "benchmark/layout" -> the train samples/s per node expected there.
    references: dict[str, Reference] = field(default_factory=dict)
    # What a submission's systems/<name>.json says that only the site knows
    # (host_memory_capacity, host_storage_type, cooling, ...).
    system_description: dict[str, str] = field(default_factory=dict)


# A site's own system YAMLs may live outside the checkout: directories in
# MLPERF_HPC_SYSTEMS (separated by ':') are searched before launch/systems/.
SYSTEMS_ENV = "MLPERF_HPC_SYSTEMS"


def _system_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get(SYSTEMS_ENV, "").split(":") if d] + [SYSTEMS_DIR]


def available_systems() -> list[str]:
    return sorted({p.stem for folder in _system_dirs() for p in folder.glob("*.yaml")})


def load_system(name: str) -> System:
    path = next((folder / f"{name}.yaml" for folder in _system_dirs() if (folder / f"{name}.yaml").is_file()), None)
    if path is None:
        raise HarnessError(f"unknown system '{name}': use one of {', '.join(available_systems())} "
                           f"(or add launch/systems/{name}.yaml, or a directory of your own in {SYSTEMS_ENV})")
    system = load_config(path, System)
    pjm = system.pjm
    if pjm.localtmp_gib and pjm.max_localtmp_gib and pjm.localtmp_gib > pjm.max_localtmp_gib:
        raise HarnessError(f"{path}: pjm.localtmp_gib {pjm.localtmp_gib} exceeds the {pjm.max_localtmp_gib} GiB of "
                           f"node-local space a job may ask for")
    for group_name, group in system.resource_groups.items():
        if group.min_nodes > group.max_nodes:
            raise HarnessError(f"{path}: resource group '{group_name}' has min_nodes {group.min_nodes} above "
                               f"max_nodes {group.max_nodes}")
    return system
