"""Launchers: how ranks start inside a job, and where they are placed.

Placement follows the layout: ranks of one spatial group are consecutive, and
consecutive ranks sit on the same or neighbouring nodes (on Fugaku, a snake
walk through the Tofu shape, written as a rank map); weak-scaling instances
each get a compact block of nodes (a slab of the torus via ``-vcoordfile``,
or a contiguous slice of the host list elsewhere).
"""
from __future__ import annotations

import shlex
from abc import ABC, abstractmethod

from launch.job import JobSpec
from launch.registry import Registry


def snake_order(shape: list[int]) -> list[tuple[int, ...]]:
    """Every coordinate of ``shape`` once, consecutive ones adjacent
    (boustrophedon: each axis reverses direction when the next one steps)."""
    if len(shape) == 1:
        return [(i,) for i in range(shape[0])]
    inner = snake_order(shape[1:])
    out = []
    for i in range(shape[0]):
        out += [(i, *c) for c in (inner if i % 2 == 0 else reversed(inner))]
    return out


def instance_blocks(shape: list[int], instances: int) -> list[list[tuple[int, ...]]]:
    """Split the job's node shape into one compact block per instance: slabs
    along the first axis that divides, else contiguous runs of the snake."""
    for axis, size in enumerate(shape):
        if size % instances == 0:
            width = size // instances
            blocks = []
            for i in range(instances):
                sub = list(shape)
                sub[axis] = width
                blocks.append([tuple(c[k] + (i * width if k == axis else 0) for k in range(len(c)))
                               for c in snake_order(sub)])
            return blocks
    walk = snake_order(shape)
    per = len(walk) // instances
    return [walk[i * per:(i + 1) * per] for i in range(instances)]


def _coords_text(coords: list[tuple[int, ...]], ppn: int) -> str:
    return "".join(f"({','.join(map(str, c))})\n" for c in coords for _ in range(ppn))


LAUNCHERS = Registry("launcher")
register = LAUNCHERS.register


class Launcher(ABC):
    name = ""
    binds_ranks = False    # places ranks itself: no per-rank wrapper (bind.sh)

    def files(self, job: JobSpec) -> dict[str, str]:
        """Placement files written beside the script (name -> text)."""
        return {}

    def prepare(self, job: JobSpec, hostfile_var: str) -> list[str]:
        """Shell lines run once before any instance starts."""
        return []

    @abstractmethod
    def command(self, job: JobSpec, instance: int, program: list[str]) -> list[str]:
        """The command line that starts one instance's ranks running ``program``."""


@register
class FujitsuMpiexec(Launcher):
    """Fujitsu MPI's mpiexec (Fugaku)."""

    name = "fujitsu-mpiexec"

    def _shape(self, job: JobSpec) -> list[int]:
        return [int(d) for d in job.node_shape.split("x")] if job.node_shape else [job.total_nodes]

    def files(self, job: JobSpec) -> dict[str, str]:
        shape = self._shape(job)
        if job.instances > 1:
            return {f"instance_{i}.vcoord": _coords_text(block, job.ppn)
                    for i, block in enumerate(instance_blocks(shape, job.instances))}
        if job.layout == "hybrid":
            return {"rankmap": _coords_text(snake_order(shape), job.ppn)}
        return {}

    def command(self, job: JobSpec, instance: int, program: list[str]) -> list[str]:
        out = f"{job.job_dir}/output/{instance}/%/1000r/out"
        words = ["mpiexec", "-np", str(job.processes), "-of-proc", out]
        if job.instances > 1:
            words += ["-vcoordfile", f"{job.job_dir}/instance_{instance}.vcoord"]
        return words + program


@register
class OpenMPIMpirun(Launcher):
    """Open MPI / HPC-X mpirun on the scheduler's host list (ABCI)."""

    name = "openmpi-mpirun"

    def prepare(self, job: JobSpec, hostfile_var: str) -> list[str]:
        hosts = shlex.quote(f"{job.job_dir}/hostfile")
        lines = [f'sort -u "${hostfile_var}" | awk \'{{print $1" slots={job.ppn}"}}\' > {hosts}']
        for i in range(job.instances if job.instances > 1 else 0):
            first, last = i * job.nodes + 1, (i + 1) * job.nodes
            lines.append(f"sed -n '{first},{last}p' {hosts} > {shlex.quote(f'{job.job_dir}/hostfile.{i}')}")
        return lines

    def command(self, job: JobSpec, instance: int, program: list[str]) -> list[str]:
        hostfile = f"{job.job_dir}/hostfile" + (f".{instance}" if job.instances > 1 else "")
        # Binding is the per-rank wrapper's (bind.sh), not mpirun's.
        words = ["mpirun", "-n", str(job.processes), "-npernode", str(job.ppn), "--hostfile", hostfile,
                 "--map-by", "slot", "--bind-to", "none", *job.system.mpi_args]
        for name in sorted(job.env):
            words += ["-x", name]
        return words + program


@register
class Srun(Launcher):
    """Slurm's srun: it binds each task to its cores and, on GPU nodes, gives
    it one GPU of its own (the task sees it as GPU 0). Weak-scaling instances
    run as concurrent steps, each on its own block of the allocation's nodes."""

    name = "srun"
    binds_ranks = True

    def command(self, job: JobSpec, instance: int, program: list[str]) -> list[str]:
        s = job.system
        words = ["srun", "-N", str(job.nodes), "-n", str(job.processes), f"--ntasks-per-node={job.ppn}",
                 f"--cpus-per-task={max(1, s.cores_per_node // job.ppn)}", "--cpu-bind=cores"]
        if s.accelerators_per_node:
            words.append("--gpus-per-task=1")
        if job.instances > 1:
            words += ["--exact", f"--relative={instance * job.nodes}"]
        return words + [*s.mpi_args, *program]


@register
class LocalMpirun(Launcher):
    """Plain mpirun on this machine."""

    name = "local-mpirun"

    def command(self, job: JobSpec, instance: int, program: list[str]) -> list[str]:
        words = ["mpirun", "-np", str(job.processes), "--oversubscribe", "--bind-to", "none"]
        for name in sorted(job.env):
            words += ["-x", name]
        return words + program




def get_launcher(name: str) -> Launcher:
    return LAUNCHERS.create(name)


