"""Campaigns end to end: submit --runs, status, collect (twice), check, the
results store and the report from it, on the local system with real runs,
and through fake PJM, PBS and Slurm tools whose submit command runs the
rendered script here. Also the Slurm backend's exact command lines and the
scheduler tools' failures, each one line."""
from __future__ import annotations

import csv
import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml

from launch.submit import status
from launch.system import load_system
from mlperf_hpc.results_store import ResultsStore
from tests.helpers import MPI_ENV, REPO, cli, log_records, write_config


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _env(tmp_path: Path, bin_dir: Path | None = None, **extra: str) -> dict:
    path = f"{bin_dir}:{os.environ['PATH']}" if bin_dir else os.environ["PATH"]
    return {**MPI_ENV, "TMPDIR": str(tmp_path), "PATH": path, "MLPERF_HPC_STORE": str(tmp_path / "store.sqlite"),
            **extra}


# --- Slurm: directives, exact command lines, replies --------------------------------

def test_slurm_submit_status_cancel_command_lines(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _tool(bin_dir, "sbatch", f'echo "sbatch $*" >> {calls}; echo "4242;perlmutter"')
    _tool(bin_dir, "squeue", f'echo "squeue $*" >> {calls}; echo "4242|cosmo|RUNNING"; echo "4243|cosmo2|PENDING"')
    _tool(bin_dir, "scancel", f'echo "scancel $*" >> {calls}')
    env, job_dir = _env(tmp_path, bin_dir), tmp_path / "job"
    submitted = cli("launch", "submit", "--system", "slurm-gpu", "--nodes", "2", "--group", "m4242", "--name",
                    "cosmo", "--job-dir", str(job_dir), env=env)
    assert submitted.returncode == 0 and "submitted 4242" in submitted.stdout, submitted.stderr
    assert cli("launch", "status", "--system", "slurm-gpu", "4242", env=env).stdout.splitlines() == [
        "4242  cosmo  running  (RUNNING)", "4243  cosmo2  queued  (PENDING)"]
    assert cli("launch", "cancel", "--system", "slurm-gpu", "4242", env=env).returncode == 0
    assert calls.read_text().splitlines() == [
        "squeue -h -o %i|%j|%T --me", f"sbatch --parsable {job_dir}/job.sh", "squeue -h -o %i|%j|%T -j 4242",
        "scancel 4242"]
    states = status(load_system("slurm-gpu"), output="17_3|a|COMPLETING\n18|b|OUT_OF_MEMORY\ngarbage\n")
    assert [(s.job_id, s.state) for s in states] == [("17_3", "running"), ("18", "failed")]


# --- scheduler tools that fail: one line each -----------------------------------------

def _one_error_line(result, *fragments):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlperf-hpc: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_scheduler_tool_missing_not_executable_or_hanging_is_one_line(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pjstat").write_text("#!/bin/bash\necho hi\n")          # not executable
    _tool(bin_dir, "qstat", "sleep 60")                                 # hangs
    env = _env(tmp_path, bin_dir, MLPERF_HPC_TOOL_TIMEOUT="1")
    _one_error_line(cli("launch", "status", "--system", "fugaku", env=env), "'pjstat'", "not executable")
    start = time.monotonic()
    _one_error_line(cli("launch", "status", "--system", "abci3", env=env), "qstat -x", "did not answer within 1 s")
    assert time.monotonic() - start < 30
    _one_error_line(cli("launch", "status", "--system", "slurm-gpu", env={**env, "PATH": str(bin_dir)}),
                    "'squeue' not found")


def test_an_unreadable_submit_reply_finds_the_job_by_name_instead_of_failing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    submitted = tmp_path / "submitted"
    # squeue lists the job once sbatch has queued it; sbatch's reply is garbled.
    _tool(bin_dir, "squeue", f'[ -e {submitted} ] && echo "977|cosmo|PENDING"; echo "12|other|RUNNING"')
    _tool(bin_dir, "sbatch", f'touch {submitted}; echo "sbatch: warning: bad locale"')
    env = _env(tmp_path, bin_dir)
    result = cli("launch", "submit", "--system", "slurm-gpu", "--nodes", "1", "--group", "m1", "--name", "cosmo",
                 "--job-dir", str(tmp_path / "job"), env=env)
    assert result.returncode == 0 and "submitted 977" in result.stdout, result.stderr
    assert (tmp_path / "job" / "job_id").read_text().strip() == "977"
    # Not found by name either: one line that warns against resubmitting.
    _tool(bin_dir, "squeue", 'echo "12|other|RUNNING"')
    again = cli("launch", "submit", "--system", "slurm-gpu", "--nodes", "1", "--group", "m1", "--name", "cosmo",
                "--job-dir", str(tmp_path / "job2"), env=env)
    _one_error_line(again, "could not read a job id from sbatch's output", "may still have been queued",
                    "launch status --system slurm-gpu")


# --- whole campaigns ---------------------------------------------------------------------

# CPU systems for each scheduler, whose fake tools run the rendered script here.
FAKE_SYSTEMS = {
    "pjm-cpu": dict(scheduler="pjm", launcher="fujitsu-mpiexec", env={"PLE_MPI_STD_EMPTYFILE": "off"}),
    "pbs-cpu": dict(scheduler="pbs", launcher="openmpi-mpirun"),
    "slurm-cpu": dict(scheduler="slurm", launcher="srun"),
}
# Each fake submit tool runs the script at once (the "job") and replies as the real one does.
SUBMIT = {
    "pjm": ("pjsub", 'bash "$1" > "$(dirname "$1")/job.out" 2>&1; echo "[INFO] PJM 0000 pjsub Job $RANDOM submitted."'),
    "pbs": ("qsub", 'PBS_NODEFILE=$FAKE_NODEFILE bash "$1" > "$(dirname "$1")/job.out" 2>&1; echo "$RANDOM.pbs1"'),
    "slurm": ("sbatch", 'script="${@: -1}"; bash "$script" > "$(dirname "$script")/job.out" 2>&1; echo "$RANDOM"'),
}
# The launchers, as local mpirun: take the process count, drop the rest of the options.
LAUNCH = """n=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n|-np) n=$2; shift 2 ;;
    -N|-npernode|--hostfile|--map-by|--bind-to|-of-proc|-vcoordfile|-x) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
exec mpirun -np "$n" --oversubscribe --bind-to none "$@"
"""


def _fake_site(tmp_path: Path) -> tuple[dict, Path]:
    systems, bin_dir = tmp_path / "systems", tmp_path / "bin"
    systems.mkdir()
    bin_dir.mkdir()
    local = yaml.safe_load((REPO / "launch" / "systems" / "local.yaml").read_text())
    for name, changes in FAKE_SYSTEMS.items():
        system = {**local, "name": name, "description": f"{name} (fake tools)", **changes,
                  "env": {**local["env"], **changes.get("env", {})}, "default_procs_per_node": 1}
        (systems / f"{name}.yaml").write_text(yaml.safe_dump(system))
    for tool, script in SUBMIT.values():
        _tool(bin_dir, tool, script)
    for tool in ("mpiexec", "srun"):
        _tool(bin_dir, tool, LAUNCH)
    for tool in ("pjstat", "qstat", "squeue"):
        _tool(bin_dir, tool, "true")                  # every job has ended by the time it is asked
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("localhost\n")
    return _env(tmp_path, bin_dir, MLPERF_HPC_SYSTEMS=str(systems), FAKE_NODEFILE=str(nodefile)), bin_dir


def _campaign_flow(tmp_path: Path, system: str, env: dict, config: Path, pack: bool) -> None:
    job_dir = tmp_path / f"{system}-campaign"
    submit = cli("launch", "submit", "--system", system, "--nodes", "1", "--ppn", "1", "--config", str(config),
                 "--runs", "2", "--seed", "11", "--job-dir", str(job_dir), *(["--pack"] if pack else []), env=env,
                 timeout=900)
    assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
    campaign = json.loads((job_dir / "campaign.json").read_text())
    assert [r["seed"] for r in campaign["runs"]] == [11, 12]
    status = cli("launch", "status", "--system", system, "--campaign", str(job_dir), env=env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[-1] == "0 queued  0 running  2 finished  0 failed", status.stdout
    assert all("time to train 0." in line for line in status.stdout.splitlines()[:2])
    into = tmp_path / f"{system}-tree"
    first = cli("launch", "collect", str(job_dir), "--system", system, "--org", "acme", "--into", str(into), env=env)
    assert first.returncode == 0 and first.stdout.count("collected") == 2, first.stdout + first.stderr
    folder = into / "acme" / "results" / system / "strong" / "cosmoflow"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = cli("launch", "collect", str(job_dir), "--system", system, "--org", "acme", "--into", str(into), env=env)
    assert second.returncode == 1 and {p.name: p.read_bytes() for p in folder.iterdir()} == before
    seeds = sorted(json.loads(line.split(":::MLLOG", 1)[1])["value"] for p in folder.iterdir()
                   for line in p.read_text().splitlines() if '"key": "seed"' in line)
    assert seeds == [11, 12]
    check = cli("check", str(into / "acme"), env=env)
    assert check.returncode == 1
    assert check.stdout.count("cosmoflow strong needs 10 runs, found 2") == 2, check.stdout
    assert "system description invalid" not in check.stdout      # the JSON collect wrote is complete
    store = ResultsStore(env["MLPERF_HPC_STORE"])
    runs = store.runs({"campaign": campaign["campaign"]})
    store.close()
    assert sorted(r.seed for r in runs) == [11, 12] and {r.system for r in runs} == {system}
    assert all(r.status == "success" and r.epochs == 1 for r in runs)
    out = tmp_path / f"{system}-report"
    report = cli("report", "--runs", f"campaign={campaign['campaign']}", "--out", str(out), env=env)
    assert report.returncode == 0, report.stderr
    assert len(list(csv.DictReader(open(out / "report.csv")))) == 2


@pytest.fixture
def quick_config(tmp_path, tiny_data):
    # Any first epoch reaches this target: each run is one epoch.
    return write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 32, "n_valid": 32, "n_epochs": 2},
                        train={"target": 5.0})


@pytest.mark.slow
@pytest.mark.mpi
def test_a_local_campaign_end_to_end(tmp_path, quick_config):
    env = _env(tmp_path)
    _campaign_flow(tmp_path, "local", env, quick_config, pack=False)
    listing = cli("results", "list", "system=local", env=env)
    assert listing.stdout.strip().endswith(f"2 run(s) in {tmp_path / 'store.sqlite'}"), listing.stdout


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.parametrize("system, pack", [("pjm-cpu", True), ("pbs-cpu", False), ("slurm-cpu", True)])
def test_a_campaign_through_a_scheduler(tmp_path, quick_config, system, pack):
    env, _ = _fake_site(tmp_path)
    _campaign_flow(tmp_path, system, env, quick_config, pack)


@pytest.mark.slow
@pytest.mark.mpi
def test_an_instance_that_dies_ends_the_weak_scaling_job_within_a_minute(tmp_path, quick_config):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_mpirun = __import__("shutil").which("mpirun")
    # Instance 1 dies at once; instance 0 trains for real and waits for it at the start gate.
    _tool(bin_dir, "mpirun", f'case " $* " in *" --instance-id 1 "*) exit 7 ;; esac\nexec {real_mpirun} "$@"')
    job_dir = tmp_path / "weak"
    start = time.monotonic()
    result = cli("launch", "submit", "--system", "local", "--nodes", "1", "--ppn", "1", "--instances", "2",
                 "--config", str(quick_config), "--job-dir", str(job_dir), env=_env(tmp_path, bin_dir), timeout=600)
    elapsed = time.monotonic() - start
    output = (job_dir / "job.out").read_text()
    assert (job_dir / "exit_code").read_text().strip() == "101", output[-3000:]
    assert "mlperf-hpc: weak-scaling job failed: instance 1" in output
    assert elapsed < 90, elapsed          # not the start gate's 30 minutes
    assert result.returncode == 0         # submitted; the job's own status is in exit_code


@pytest.mark.slow
@pytest.mark.mpi
def test_when_an_instance_dies_mid_run_the_others_log_run_stop_aborted(tmp_path, tiny_data):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_mpirun = __import__("shutil").which("mpirun")
    # Both instances pass the start gate; instance 1 is killed once it trains.
    _tool(bin_dir, "mpirun", f'''case " $* " in
  *" --instance-id 1 "*) {real_mpirun} "$@" & pid=$!
      while ! grep -q '"key": "epoch_start"' {tmp_path}/weak/instance_1.log 2>/dev/null; do sleep 0.2; done
      kill -KILL $pid; exit 9 ;;
esac
exec {real_mpirun} "$@"''')
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 32, "n_valid": 32, "n_epochs": 40},
                          train={"target": 0.001})           # not reached: it would train all 40 epochs
    job_dir = tmp_path / "weak"
    cli("launch", "submit", "--system", "local", "--nodes", "1", "--ppn", "1", "--instances", "2",
        "--config", str(config), "--job-dir", str(job_dir), env=_env(tmp_path, bin_dir), timeout=600)
    output = (job_dir / "job.out").read_text()
    assert (job_dir / "exit_code").read_text().strip() == "101", output[-3000:]
    records = log_records(job_dir / "instance_0.log")
    assert any(r["key"] == "run_start" for r in records), output[-3000:]
    assert records[-1]["key"] == "run_stop" and records[-1]["metadata"]["status"] == "aborted"
    assert sum(r["key"] == "epoch_start" for r in records) < 40


@pytest.mark.slow
def test_a_collected_set_of_ten_passes_the_official_package_checker(tmp_path):
    """With the run count a submission needs, collect writes a tree (results
    and a system JSON from the system YAML) that the official package
    checker passes: NVIDIA's 10 published CosmoFlow runs, as if finished
    here on a system described like theirs."""
    systems = tmp_path / "systems"
    systems.mkdir()
    local = yaml.safe_load((REPO / "launch" / "systems" / "local.yaml").read_text())
    eos = {**local, "name": "eos", "description": "NVIDIA Eos", "accelerators_per_node": 8,
           "processor": "Intel Xeon Platinum 8480C", "accelerator": "NVIDIA H100-SXM5-80GB",
           "system_description": {"host_memory_capacity": "2 TB", "cooling": "air"}}
    (systems / "eos.yaml").write_text(yaml.safe_dump(eos))
    env = _env(tmp_path, MLPERF_HPC_SYSTEMS=str(systems))
    published = sorted((REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA" / "results" /
                        "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow").glob("result_*.txt"))
    jobs = []
    for i, log in enumerate(published):
        (tmp_path / f"job{i}").mkdir()
        (tmp_path / f"job{i}" / "result.log").write_bytes(log.read_bytes())
        jobs.append(str(tmp_path / f"job{i}"))
    collected = cli("launch", "collect", *jobs, "--system", "eos", "--org", "NVIDIA", "--into",
                    str(tmp_path / "tree"), env=env)
    lines = collected.stdout.splitlines()
    assert collected.returncode == 0 and sum(ln.startswith("collected ") for ln in lines) == 10, collected.stderr
    description = json.loads((tmp_path / "tree" / "NVIDIA" / "systems" / "eos.json").read_text())
    assert description["host_memory_capacity"] == "2 TB" and description["number_of_nodes"] == "64"
    check = cli("check", str(tmp_path / "tree" / "NVIDIA"), env=env)
    assert f"PASS  official package checker on {tmp_path / 'tree' / 'NVIDIA'}" in check.stdout, check.stdout
    assert check.returncode == 0, check.stdout
