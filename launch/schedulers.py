"""Schedulers: how a job is queued. Each backend writes its directives,
builds the exact submit / status / cancel command lines, and parses what the
scheduler prints back. ``local`` has no queue and runs the script directly."""
from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from dataclasses import dataclass

from launch.job import JobSpec
from launch.registry import Registry
from core.errors import HarnessError


@dataclass
class JobState:
    job_id: str
    name: str
    state: str        # queued, running, done, failed, held, unknown
    raw: str          # the scheduler's own code


SCHEDULERS = Registry("scheduler")
register = SCHEDULERS.register


class Scheduler(ABC):
    name = ""
    hostfile_var = ""          # the variable naming the job's hosts
    states: dict[str, str] = {}
    submit_tool = ""
    submit_pattern = ""        # finds the job id in the submit tool's output (group 1)
    job_id_pattern = r"^\d{1,12}$"
    job_id_form = "digits"

    def check_job_id(self, job_id: str | None) -> str | None:
        """A job id as this scheduler writes them, or a one-line refusal."""
        if job_id is not None and not re.match(self.job_id_pattern, job_id):
            raise HarnessError(f"job id {job_id!r} is not a {self.name} job id ({self.job_id_form})")
        return job_id

    def directives(self, job: JobSpec) -> list[str]:
        return []

    def job_setup(self, job: JobSpec, packages: tuple[str, ...]) -> list[str]:
        """Shell lines a job runs before its ranks start (the site's file
        distribution); ``packages`` are the harness's top-level folders."""
        return []

    @abstractmethod
    def submit_command(self, job: JobSpec, script: str) -> list[str]:
        """The exact command line that queues ``script``."""

    @abstractmethod
    def status_command(self, job_id: str | None) -> list[str]:
        """The command line that lists the user's jobs (or one job)."""

    @abstractmethod
    def cancel_command(self, job_id: str) -> list[str]:
        """The command line that cancels a job."""

    def parse_submit(self, output: str) -> str:
        match = re.search(self.submit_pattern, output, re.MULTILINE)
        if not match:
            raise HarnessError(f"could not read a job id from {self.submit_tool}'s output: {output.strip()[:200]!r}")
        return match.group(1)

    @abstractmethod
    def parse_status(self, output: str) -> list[JobState]:
        """The jobs in the status command's output."""

    def _state(self, code: str) -> str:
        return self.states.get(code, "unknown")


@register
class PJM(Scheduler):
    """Fujitsu Technical Computing Suite job manager (Fugaku)."""

    name = "pjm"
    submit_tool = "pjsub"
    submit_pattern = r"Job (\d+(?:\[\d+\])?) submitted"
    job_id_pattern = r"^\d{1,12}(\[\d{1,6}\])?$"
    job_id_form = "digits, or digits[n] for a bulk job"
    states = {"ACC": "queued", "QUE": "queued", "RNA": "queued", "RNP": "running", "RUN": "running",
              "RNE": "running", "RNO": "running", "EXT": "done", "CCL": "failed", "ERR": "failed",
              "HLD": "held", "RJT": "failed"}

    def directives(self, job: JobSpec) -> list[str]:
        """Every option as a directive, so that the script submitted by hand
        with a bare ``pjsub job.sh`` asks for the same job."""
        s = job.system
        lines = [f'#PJM -N {job.name}',
                 f'#PJM -L "node={job.node_shape or job.total_nodes}:{job.allocation}"',
                 f'#PJM -L "rscgrp={job.rscgrp}"',
                 f'#PJM -L "elapse={job.elapse}"']
        if s.pjm.frequency_mhz:
            lines.append(f'#PJM -L "freq={s.pjm.frequency_mhz}"')
        lines.append(f'#PJM --mpi "max-proc-per-node={job.ppn}"')
        if job.node_shape:
            lines.append(f'#PJM --mpi "shape={job.node_shape}"')
        if job.layout == "hybrid" and job.instances == 1:
            lines.append(f'#PJM --mpi "rank-map-hostfile={job.job_dir}/rankmap"')
        if job.group:
            lines.append(f"#PJM -g {job.group}")
        if s.staging.method == "llio" and s.pjm.localtmp_gib:
            lines.append(f"#PJM --llio localtmp-size={s.pjm.localtmp_gib}Gi")
        if s.pjm.llio_gfscache:
            lines.append(f"#PJM -x PJM_LLIO_GFSCACHE={s.pjm.llio_gfscache}")
        lines += ["#PJM -S", f'#PJM --spath "{job.job_dir}/%n.%j.stat"',
                  f'#PJM -o "{job.job_dir}/%n.%j.out"', f'#PJM -e "{job.job_dir}/%n.%j.err"']
        return lines

    def job_setup(self, job: JobSpec, packages: tuple[str, ...]) -> list[str]:
        s, lines = job.system, []
        if s.pjm.distribute_environment:
            # Thousands of Python files imported by every rank: one copy in the
            # nodes' second-layer cache instead of every node reading the shared FS.
            lines.append(f'{s.pjm.distribute_environment} "$MLPERF_HPC_HOME/.venv" '
                         + " ".join(f'"$MLPERF_HPC_HOME/{package}"' for package in packages))
        if s.staging.method == "llio" and job.config:
            # Common files are read by every rank: LLIO's transfer puts one copy
            # in the second-layer cache instead of every rank hitting the FS.
            lines.append(f"llio_transfer {shlex.quote(job.config)}")
        return lines

    def submit_command(self, job: JobSpec, script: str) -> list[str]:
        return ["pjsub", script]

    def status_command(self, job_id: str | None) -> list[str]:
        return ["pjstat"] + ([job_id] if job_id else [])

    def cancel_command(self, job_id: str) -> list[str]:
        return ["pjdel", job_id]


    def parse_status(self, output: str) -> list[JobState]:
        jobs, header = [], None
        for line in output.splitlines():
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "JOB_ID":
                header = fields
                continue
            if header and fields[0].isdigit():
                row = dict(zip(header, fields))
                jobs.append(JobState(row["JOB_ID"], row.get("JOB_NAME", ""), self._state(row.get("ST", "")),
                                     row.get("ST", "")))
        return jobs


@register
class UGE(Scheduler):
    """Univa Grid Engine (ABCI 2.0)."""

    name = "uge"
    submit_tool = "qsub"
    submit_pattern = r"Your job(?:-array)? (\d+)"
    hostfile_var = "SGE_JOB_HOSTLIST"
    states = {"qw": "queued", "hqw": "held", "r": "running", "t": "running", "Rr": "running",
              "dr": "failed", "Eqw": "failed", "s": "held"}

    def directives(self, job: JobSpec) -> list[str]:
        return [f"#$ -N {job.name}", f"#$ -l {job.rscgrp}={job.total_nodes}", f"#$ -l h_rt={job.elapse}",
                "#$ -j y", "#$ -cwd", f"#$ -o {job.job_dir}/"]

    def submit_command(self, job: JobSpec, script: str) -> list[str]:
        return ["qsub", "-g", job.group, script]

    def status_command(self, job_id: str | None) -> list[str]:
        return ["qstat"] + (["-j", job_id] if job_id else [])

    def cancel_command(self, job_id: str) -> list[str]:
        return ["qdel", job_id]

    def parse_status(self, output: str) -> list[JobState]:
        """``qstat`` prints a table; ``qstat -j ID`` prints ``key: value``
        lines, one block per job, with a ``job_state N:`` line per task."""
        if re.search(r"^job_number:", output, re.MULTILINE):
            return self._parse_details(output)
        jobs = []
        for line in output.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0].isdigit():
                jobs.append(JobState(fields[0], fields[2], self._state(fields[4]), fields[4]))
        return jobs

    def _parse_details(self, output: str) -> list[JobState]:
        jobs, block = [], {}

        def flush():
            if "job_number" in block:
                code = block.get("job_state", "")
                jobs.append(JobState(block["job_number"], block.get("job_name", ""),
                                     self._state(code) if code else "queued", code or "no task started"))

        for line in output.splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key = key.strip().split()[0] if key.strip() else ""
            if key == "job_number":
                flush()
                block = {}
            block.setdefault(key, value.strip())
        flush()
        return jobs


@register
class PBS(Scheduler):
    """PBS Professional (ABCI 3.0)."""

    name = "pbs"
    submit_tool = "qsub"
    submit_pattern = r"^\s*(\d+\.[\w.-]+)\s*$"
    job_id_pattern = r"^\d{1,12}(\.[A-Za-z0-9.-]{1,64})?$"
    job_id_form = "digits, optionally .server"
    hostfile_var = "PBS_NODEFILE"
    states = {"Q": "queued", "W": "queued", "H": "held", "R": "running", "E": "running", "F": "done",
              "X": "done", "S": "held"}

    def directives(self, job: JobSpec) -> list[str]:
        # MPI jobs ask for their ranks per node: select=N:mpiprocs=P (ABCI 3.0 manual).
        return [f"#PBS -N {job.name}", f"#PBS -P {job.group}", f"#PBS -q {job.rscgrp}",
                f"#PBS -l select={job.total_nodes}:mpiprocs={job.ppn}", f"#PBS -l walltime={job.elapse}",
                "#PBS -j oe", f"#PBS -o {job.job_dir}/"]

    def submit_command(self, job: JobSpec, script: str) -> list[str]:
        return ["qsub", script]

    def status_command(self, job_id: str | None) -> list[str]:
        return ["qstat", "-x"] + ([job_id] if job_id else [])

    def cancel_command(self, job_id: str) -> list[str]:
        return ["qdel", job_id]

    def parse_status(self, output: str) -> list[JobState]:
        """``qstat -x`` prints a table (Job id, Name, User, Time Use, S, Queue);
        ``qstat -x -f`` prints ``Job Id:`` blocks of ``key = value`` lines."""
        if re.search(r"^Job Id:", output, re.MULTILINE):
            return self._parse_full(output)
        jobs = []
        for line in output.splitlines():
            fields = line.split()
            if len(fields) >= 6 and re.match(r"^\d+(\.|$)", fields[0]):
                jobs.append(JobState(fields[0], fields[1], self._state(fields[4]), fields[4]))
        return jobs

    def _parse_full(self, output: str) -> list[JobState]:
        jobs, job_id, fields = [], None, {}
        for line in output.splitlines() + ["Job Id: end"]:
            if line.startswith("Job Id:"):
                if job_id:
                    code = fields.get("job_state", "")
                    jobs.append(JobState(job_id, fields.get("Job_Name", ""), self._state(code), code))
                job_id, fields = line.split(":", 1)[1].strip(), {}
            elif "=" in line:
                key, _, value = line.partition("=")
                fields.setdefault(key.strip(), value.strip())
        return jobs


@register
class Slurm(Scheduler):
    """Slurm (most MLPerf HPC submitters' clusters: Eos, Perlmutter, JUWELS)."""

    name = "slurm"
    submit_tool = "sbatch"
    submit_pattern = r"^(\d+)(?:;[\w.-]+)?\s*$"     # sbatch --parsable: JOBID or JOBID;CLUSTER
    hostfile_var = "SLURM_JOB_NODELIST"
    states = {"PENDING": "queued", "CONFIGURING": "queued", "REQUEUED": "queued", "RESV_DEL_HOLD": "held",
              "REQUEUE_HOLD": "held", "SUSPENDED": "held", "RUNNING": "running", "COMPLETING": "running",
              "STAGE_OUT": "running", "SIGNALING": "running", "COMPLETED": "done", "FAILED": "failed",
              "CANCELLED": "failed", "TIMEOUT": "failed", "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed",
              "PREEMPTED": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed"}

    def directives(self, job: JobSpec) -> list[str]:
        s = job.system
        lines = [f"#SBATCH -J {job.name}", f"#SBATCH -N {job.total_nodes}", f"#SBATCH --ntasks-per-node={job.ppn}",
                 f"#SBATCH --cpus-per-task={max(1, s.cores_per_node // job.ppn)}", f"#SBATCH -t {job.elapse}",
                 f"#SBATCH -p {job.rscgrp}"]
        if s.accelerators_per_node:
            lines.append(f"#SBATCH --gpus-per-node={s.accelerators_per_node}")
        if job.group:
            lines.append(f"#SBATCH -A {job.group}")
        return lines + [f"#SBATCH -o {job.job_dir}/%x.%j.out"]

    def submit_command(self, job: JobSpec, script: str) -> list[str]:
        return ["sbatch", "--parsable", script]

    def status_command(self, job_id: str | None) -> list[str]:
        # A finished job leaves squeue's list; its log says how it ended.
        return ["squeue", "-h", "-o", "%i|%j|%T"] + (["-j", job_id] if job_id else ["--me"])

    def cancel_command(self, job_id: str) -> list[str]:
        return ["scancel", job_id]

    def parse_status(self, output: str) -> list[JobState]:
        jobs = []
        for line in output.splitlines():
            fields = [f.strip() for f in line.split("|")]
            if len(fields) == 3 and re.match(r"^\d+(_\d+)?$", fields[0]):
                jobs.append(JobState(fields[0], fields[1], self._state(fields[2].split()[0] if fields[2] else ""),
                                     fields[2]))
        return jobs


@register
class Local(Scheduler):
    """No queue: the script runs at once, in the foreground."""

    name = "local"
    job_id_pattern = r".*"          # there are no ids; status and cancel say why

    def submit_command(self, job: JobSpec, script: str) -> list[str]:
        return ["bash", script]

    def status_command(self, job_id: str | None) -> list[str]:
        raise HarnessError("local jobs run in the foreground; there is no queue to ask")

    def cancel_command(self, job_id: str) -> list[str]:
        raise HarnessError("local jobs run in the foreground; stop one with Ctrl-C")

    def parse_status(self, output: str) -> list[JobState]:
        return []


def get_scheduler(name: str) -> Scheduler:
    return SCHEDULERS.create(name)
