"""What a user asks for, validated against the system before any script is
written: nodes within the resource group, a well-formed elapse within its
limit, processes that the spatial split divides, a group where one is needed,
and names that cannot smuggle shell into a script."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from core.benchmark import get_facts
from core.errors import HarnessError
from launch.binding import placements
from launch.system import ALLOCATIONS, System
from parallel.topology import GPUS_PER_NODE_ENV, data_groups, layout_split

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ELAPSE = re.compile(r"^(\d{1,3}):([0-5]\d):([0-5]\d)$")


def elapse_seconds(text: str) -> int:
    match = ELAPSE.match(text)
    if not match:
        raise HarnessError(f"--elapse '{text}' is not a valid H:MM:SS time (minutes and seconds 00-59), "
                           f"e.g. 1:30:00")
    hours, minutes, seconds = map(int, match.groups())
    return hours * 3600 + minutes * 60 + seconds


@dataclass
class JobSpec:
    system: System
    benchmark: str
    nodes: int                      # per instance
    layout: str = "data"
    spatial: str | None = None      # AxB split of each sample, for spatial/hybrid
    config: str | None = None
    data_dir: str | None = None
    elapse: str = "1:00:00"
    name: str = "mlperf-hpc"
    group: str | None = None
    resource_group: str | None = None
    procs_per_node: int | None = None
    instances: int = 1              # > 1: weak scaling, one model per instance
    node_shape: str | None = None   # Fugaku node shape of the whole job, e.g. 4x3x8
    node_topology: str | None = None  # Fugaku: noncont, mesh or torus (default: the group's)
    job_dir: str = "jobs/job"
    seed: int | None = None
    preflight: bool = False         # an allreduce bandwidth test before training
    keep_staged: bool = False       # leave a private stage directory in place after the job
    runs: int = 1                   # runs back to back in this one job (a packed campaign)
    gate_timeout: int = 1800        # weak scaling: seconds an instance waits for the others at the start

    @property
    def ppn(self) -> int:
        return self.procs_per_node or self.system.default_procs_per_node

    @property
    def processes(self) -> int:
        """Processes per instance."""
        return self.nodes * self.ppn

    @property
    def total_nodes(self) -> int:
        return self.nodes * self.instances

    @property
    def split(self) -> tuple[int, int]:
        return layout_split(self.layout, self.spatial)

    @property
    def group_size(self) -> int:
        """Processes that share one sample."""
        return self.split[0] * self.split[1]

    @property
    def scaling(self) -> str:
        return "weak" if self.instances > 1 else "strong"

    @property
    def env(self) -> dict[str, str]:
        """The system's environment plus this job's threads per rank and,
        on GPU systems, the GPUs every rank must find."""
        threads = max(1, self.system.cores_per_node // self.ppn)
        env = {**self.system.env, "MLPERF_HPC_THREADS": str(threads)}
        if self.system.accelerators_per_node:
            env[GPUS_PER_NODE_ENV] = str(self.system.accelerators_per_node)
        return env

    @property
    def rscgrp(self) -> str:
        return self.resource_group if self.resource_group is not None else self.system.default_resource_group

    @property
    def allocation(self) -> str | None:
        """Fugaku's node allocation mode: the one asked for, else torus for a
        shape, else the group's default."""
        if self.node_topology is not None or self.system.scheduler != "pjm":
            return self.node_topology
        return "torus" if self.node_shape is not None else self.system.resource_groups[self.rscgrp].allocations[0]

    def validate(self) -> "JobSpec":
        """Refuse, in one line naming the option, a job that the system would
        reject or that would fail when it starts; returns the job."""
        self._check_names()
        self._check_resources()
        self._check_placement()
        self._check_run()
        return self

    def _check_names(self) -> None:
        # Names and groups go into scheduler directives, which cannot quote.
        if not SAFE_NAME.match(self.name):
            raise HarnessError(f"--name {self.name!r} may only contain letters, digits, '.', '_' and '-' "
                               f"(at most 63, starting with a letter or digit)")
        if not re.match(r"^[A-Za-z0-9_./-]+$", self.job_dir):
            raise HarnessError(f"--job-dir {self.job_dir!r} may only contain letters, digits and '_./-' "
                               f"(scheduler directives cannot quote it)")
        if self.group is not None and not SAFE_NAME.match(self.group):
            raise HarnessError(f"--group {self.group!r} may only contain letters, digits, '.', '_' and '-'")
        if self.system.group_required and not self.group:
            raise HarnessError(f"{self.system.name} charges jobs to a group: pass --group GROUP")

    def _check_resources(self) -> None:
        s = self.system
        if self.nodes < 1:
            raise HarnessError(f"--nodes must be at least 1, got {self.nodes}")
        if self.instances < 1:
            raise HarnessError(f"--instances must be at least 1, got {self.instances}")
        if self.rscgrp not in s.resource_groups:
            raise HarnessError(f"--rscgrp '{self.rscgrp}' does not exist on {s.name}: use one of "
                               f"{', '.join(s.resource_groups)}")
        limits = s.resource_groups[self.rscgrp]
        nodes = f"--nodes {self.nodes} x --instances {self.instances}: {self.total_nodes} nodes"
        if s.max_job_nodes and self.total_nodes > s.max_job_nodes:
            raise HarnessError(f"{nodes} exceed {s.name}'s largest job of {s.max_job_nodes} nodes")
        if not limits.min_nodes <= self.total_nodes <= limits.max_nodes:
            fitting = [name for name, g in s.resource_groups.items() if g.min_nodes <= self.total_nodes <= g.max_nodes]
            raise HarnessError(f"{nodes} are outside the {limits.min_nodes}-{limits.max_nodes} nodes of resource group "
                               f"'{self.rscgrp}' on {s.name}: "
                               + (f"use --rscgrp {fitting[0]}" if fitting else "no group takes that many"))
        if elapse_seconds(self.elapse) > elapse_seconds(limits.max_elapse):
            raise HarnessError(f"--elapse {self.elapse} exceeds the {limits.max_elapse} limit of resource group "
                               f"'{self.rscgrp}' on {s.name}")
        if not 1 <= self.ppn <= s.max_procs_per_node:
            raise HarnessError(f"--ppn {self.ppn} is outside 1..{s.max_procs_per_node} processes per node on {s.name}")
        placements(s, self.ppn)

    def _check_placement(self) -> None:
        split = self.split
        try:
            data_groups(self.layout, split, self.processes)
        except HarnessError as err:
            raise HarnessError(f"{err} ({self.nodes} nodes x {self.ppn} per node)") from None
        if self.node_topology not in (None, *ALLOCATIONS):
            raise HarnessError(f"--topology '{self.node_topology}' must be one of {', '.join(ALLOCATIONS)}")
        if self.node_topology is not None and self.system.scheduler != "pjm":
            raise HarnessError(f"--topology is Fugaku's node allocation; {self.system.name} has none")
        allocation = self.allocation
        if allocation is not None:
            allowed = self.system.resource_groups[self.rscgrp].allocations
            if allocation not in allowed:
                raise HarnessError(f"--topology {allocation} is not offered by resource group '{self.rscgrp}' on "
                                   f"{self.system.name}, which allocates {' or '.join(allowed)}")
        if allocation == "noncont" and self.node_shape is not None:
            raise HarnessError("--topology noncont allocates nodes without a shape: drop --shape or use torus/mesh")
        if self.node_shape is not None:
            dims = [int(d) for d in self.node_shape.split("x")] if re.match(r"^\d{1,5}(x\d{1,5}){0,2}$",
                                                                             self.node_shape) else []
            if not dims or math.prod(dims) != self.total_nodes:
                raise HarnessError(f"--shape '{self.node_shape}' must be 1-3 sizes like 4x3x8 whose product is "
                                   f"the job's {self.total_nodes} nodes")

    def _check_run(self) -> None:
        """What the training command checks when the job starts, checked now."""
        facts = get_facts(self.benchmark)
        config = facts.load_config(self.config, {"data.data_dir": self.data_dir} if self.data_dir else {},
                                   {"data.data_dir": "--data"})
        config.check_run(self.split, data_groups(self.layout, self.split, self.processes),
                         lambda key: "--data" if key == "data.data_dir" else key)
        if self.runs > 1 and self.instances > 1:
            raise HarnessError("--pack runs the campaign's runs back to back in one job: it takes strong scaling "
                               "only (--instances 1)")
        for instance in range(self.instances):
            for run in range(self.runs):
                if self.log_path(instance, run).exists():
                    raise HarnessError(f"--job-dir {self.job_dir} already holds {self.log_path(instance, run)} from "
                                       f"an earlier run, which the job would refuse to overwrite: pass a new --job-dir")

    def log_path(self, instance: int, run: int = 0) -> Path:
        """Where a run's log lands (``job_logs`` finds them again)."""
        if self.runs > 1:
            return Path(self.job_dir) / f"run_{run}" / "result.log"
        return Path(self.job_dir) / (f"instance_{instance}.log" if self.instances > 1 else "result.log")


def job_logs(job_dir: Path) -> list[Path]:
    """The logs a job directory holds: its weak-scaling instances' or its one run's."""
    return sorted(job_dir.glob("instance_*.log")) or sorted(job_dir.glob("result.log"))
