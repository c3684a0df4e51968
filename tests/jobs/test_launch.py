"""Job scripts, scheduler command lines and their parsing, placement, and real
local jobs (render -> mpirun -> collect)."""
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from launch.launchers import instance_blocks, snake_order
from launch.render import render
from launch.submit import status
from launch.system import load_system
from core.errors import HarnessError
from tests.helpers import MPI_ENV, REPO, cli, write_config
from tests.launch_cases import CASES, GOLDEN, job_for, rendered_text, rendered_wrapper


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_script_matches_golden_line_by_line(case):
    expected = (GOLDEN / f"{case}.sh").read_text().splitlines()
    actual = rendered_text(case).splitlines()
    for number, (want, got) in enumerate(zip(expected, actual), 1):
        assert got == want, f"{case}.sh line {number}"
    assert len(actual) == len(expected)
    wrapper = rendered_wrapper(case)
    golden = GOLDEN / f"{case}.bind.sh"
    assert (wrapper is None) == (not golden.exists())
    if wrapper is not None:
        assert wrapper.splitlines() == golden.read_text().splitlines()


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_script_is_valid_bash(case, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(render(job_for(case)).script)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def _adjacent(a, b):
    return sum(abs(x - y) for x, y in zip(a, b)) == 1


def test_hybrid_rank_map_keeps_spatial_groups_on_neighbouring_nodes():
    rankmap = render(job_for("fugaku_hybrid_4x1")).files["rankmap"].split()
    coords = [tuple(map(int, c.strip("()").split(","))) for c in rankmap]
    assert len(coords) == 8 and len(set(coords)) == 8
    assert all(_adjacent(a, b) for a, b in zip(coords, coords[1:]))  # every 4-rank group is a chain
    assert snake_order([2, 3]) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]


def test_weak_instances_get_compact_disjoint_blocks():
    files = render(job_for("fugaku_weak")).files
    blocks = [[tuple(map(int, c.strip("()").split(","))) for c in files[f"instance_{i}.vcoord"].split()]
              for i in range(2)]
    assert not set(blocks[0]) & set(blocks[1])
    assert set(blocks[0]) | set(blocks[1]) == set(snake_order([2, 2, 2]))
    for block in blocks:  # a 1x2x2 slab of the torus
        assert len({c[0] for c in block}) == 1
    assert [len(b) for b in instance_blocks([3, 5], 5)] == [3] * 5


@pytest.mark.parametrize("change, message", [
    (dict(nodes=0), "--nodes must be at least 1"),
    (dict(nodes=400), "400 nodes are outside the 1-384 nodes of resource group 'small' on fugaku: use --rscgrp large"),
    (dict(nodes=100, resource_group="large"), "100 nodes are outside the 385-12288 nodes of resource group 'large'"),
    (dict(nodes=13000, resource_group="large"), "use --rscgrp huge"),
    (dict(nodes=90000, resource_group="huge"), "90000 nodes exceed fugaku's largest job of 82944 nodes"),
    (dict(nodes=512, resource_group="large", node_topology="noncont"),
     "--topology noncont is not offered by resource group 'large' on fugaku, which allocates torus"),
    (dict(elapse="25:99:00"), "elapse '25:99:00' is not a valid H:MM:SS time"),
    (dict(elapse="80:00:00"), "exceeds the 72:00:00 limit"),
    (dict(nodes=512, resource_group="large", elapse="48:00:00"), "exceeds the 24:00:00 limit of resource group 'large'"),
    (dict(layout="hybrid", spatial="3x1"), "32 processes are not a multiple of the --spatial 3x1 split (3 processes per sample)"),
    (dict(procs_per_node=3), "--ppn 3 cannot share fugaku's 4 NUMA domains (4-7) evenly"),
    (dict(name="$(rm -rf ~)"), "--name '$(rm -rf ~)' may only contain"),
    (dict(group=None), "fugaku charges jobs to a group: pass --group"),
    (dict(group="g;reboot"), "--group 'g;reboot' may only contain"),
    (dict(node_shape="3x3"), "--shape '3x3' must be 1-3 sizes"),
])
def test_impossible_jobs_are_refused(change, message):
    job = job_for("fugaku_data")
    for key, value in change.items():
        setattr(job, key, value)
    with pytest.raises(HarnessError) as err:
        job.validate()
    assert message in str(err.value)


def test_llio_space_above_the_system_limit_is_refused(tmp_path):
    fugaku = yaml.safe_load((REPO / "launch" / "systems" / "fugaku.yaml").read_text())
    fugaku["pjm"]["localtmp_gib"] = 90                        # pjsub refuses more than 87 GiB (PJM 0049)
    (tmp_path / "fugaku.yaml").write_text(yaml.safe_dump(fugaku))
    result = cli("launch", "render", "--system", "fugaku", "--nodes", "1", "--group", "hp1",
                 env={"MLPERF_HPC_SYSTEMS": str(tmp_path)})
    assert result.returncode == 2 and result.stderr.strip().endswith(
        "pjm.localtmp_gib 90 exceeds the 87 GiB of node-local space a job may ask for")


def test_gpu_systems_run_one_rank_per_gpu():
    job = job_for("abci3_hybrid_2x2")
    job.procs_per_node = 4
    with pytest.raises(HarnessError, match="--ppn 4 on abci3 must be 8: one rank per GPU"):
        job.validate()


@pytest.mark.parametrize("shape, topology, nodes, rscgrp, directive", [
    ("2x2x2", None, 8, "small", '#PJM -L "node=2x2x2:torus"'), ("2x4", "mesh", 8, "small", '#PJM -L "node=2x4:mesh"'),
    (None, "noncont", 8, "small", '#PJM -L "node=8:noncont"'), (None, None, 8, "small", '#PJM -L "node=8:noncont"'),
    (None, None, 512, "large", '#PJM -L "node=512:torus"'), ("8x8x8", None, 512, "large", '#PJM -L "node=8x8x8:torus"')])
def test_pjm_node_shapes_and_allocations(shape, topology, nodes, rscgrp, directive):
    job = job_for("fugaku_data")
    job.node_shape, job.node_topology, job.procs_per_node, job.nodes, job.resource_group = shape, topology, 1, nodes, \
        rscgrp
    assert directive in render(job).script.splitlines()


def test_every_pjsub_option_is_a_directive_so_a_bare_pjsub_submits_the_same_job():
    script = render(job_for("fugaku_data")).script.splitlines()
    assert {'#PJM -L "rscgrp=small"', "#PJM -g hp240123", "#PJM --llio localtmp-size=80Gi"} <= set(script)


@pytest.mark.parametrize("local_rank, numa, gpu, hca", [("0", "0", "0", "mlx5_ibn0"), ("5", "1", "5", "mlx5_ibn5")])
def test_the_binding_wrapper_places_each_local_rank(tmp_path, local_rank, numa, gpu, hca):
    wrapper = tmp_path / "bind.sh"
    wrapper.write_text(rendered_wrapper("abci3_hybrid_2x2"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "numactl"                             # records how it was called, then runs the command
    fake.write_text('#!/bin/bash\necho "numactl $1 $2"; shift 2; exec "$@"\n')
    fake.chmod(0o755)
    result = subprocess.run(["bash", str(wrapper), "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES $UCX_NET_DEVICES $NCCL_IB_HCA"'],
                            capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                 "OMPI_COMM_WORLD_LOCAL_RANK": local_rank})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"numactl --cpunodebind={numa} --membind={numa}", f"{gpu} {hca}:1 {hca}"]
    beyond = subprocess.run(["bash", str(wrapper), "true"], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                 "OMPI_COMM_WORLD_LOCAL_RANK": "9"})
    assert beyond.returncode == 2 and "local rank 9 is beyond the job's 8 per node" in beyond.stderr


def test_cli_refusal_is_one_line():
    result = cli("launch", "render", "--system", "fugaku", "--nodes", "4", "--group", "hp1", "--name", "$(id)")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("mlperf-hpc: error: --name '$(id)' may only contain")


def test_user_paths_are_quoted_in_the_script():
    job = job_for("local_data")
    job.data_dir = "/data/my run; rm -rf ~"
    assert "--data '/data/my run; rm -rf ~'" in render(job).script


# --- scheduler command lines and output, through fake scheduler tools ---------

PJSTAT = """ JOB_ID       JOB_NAME   MD ST  USER     START_DATE      ELAPSE_LIM NODE_REQUIRE    VNODE  CORE V_MEM
 12345678     cosmo-n8   NM RUN u01234   11/22 10:00:05  0001:00:00 8               -      -    -
 12345679     cosmo-n16  NM QUE u01234   (11/22 11:00)   0001:00:00 16              -      -    -
"""
UGE_QSTAT = """job-ID     prior   name       user         state submit/start at     queue                          jclass                         slots ja-task-ID
------------------------------------------------------------------------------------------------------------------------------------------------
   1234567 0.28027 cosmo      aaa10000aa   r     11/22/2026 10:00:05 gpu@g0001                                                        80
   1234568 0.00000 cosmo2     aaa10000aa   qw    11/22/2026 10:01:00                                                                  160
"""
PBS_QSTAT = """Job id            Name             User              Time Use S Queue
----------------  ---------------- ----------------  -------- - -----
1234.pbs1         cosmo            user01            00:10:01 R rt_HF
1235.pbs1         cosmo2           user01                   0 Q rt_HF
"""
# ``qstat -j ID``: key: value lines, a job_state line per task (Univa Grid Engine).
UGE_QSTAT_J = """==============================================================
job_number:                 1234567
jclass:                     NO_JCLASS
exec_file:                  job_scripts/1234567
submission_time:            11/22/2026 10:00:05.580
owner:                      aaa10000aa
uid:                        10000
group:                      gaa50000
sge_o_workdir:              /home/aaa10000aa
job_name:                   cosmo-n8
hard resource_list:         h_rt=3600,rt_F=8
job_state    1:             r
start_time   1:             11/22/2026 10:00:10.120
usage        1:             wallclock=00:10:01, cpu=10:00:00, mem=1000.0 GBs
scheduling info:            (Collecting of scheduler job information is turned off)
"""
# ``qstat -x -f ID``: Job Id: blocks of key = value lines (PBS Professional).
PBS_QSTAT_F = """Job Id: 1234.pbs1
    Job_Name = cosmo
    Job_Owner = user01@login1
    resources_used.walltime = 00:10:01
    job_state = R
    queue = rt_HF
    Resource_List.select = 2:mpiprocs=8

Job Id: 1236.pbs1
    Job_Name = cosmo3
    job_state = F
    Exit_status = 0
"""


@pytest.fixture
def fake_tools(tmp_path):
    """Scheduler tools on PATH that record their argv and print a sample."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    outputs = {"pjsub": "[INFO] PJM 0000 pjsub Job 12345678 submitted.\n", "pjstat": PJSTAT, "pjdel": "",
               "qsub": "", "qstat": "", "qdel": ""}

    def install(overrides=None):
        for name, text in {**outputs, **(overrides or {})}.items():
            (tmp_path / f"{name}.out").write_text(text)
            tool = bin_dir / name
            tool.write_text(f'#!/bin/bash\necho "{name}${{*:+ $*}}" >> {calls}\ncat {tmp_path}/{name}.out\n')
            tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
        return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls

    return install


def test_pjm_submit_status_cancel(fake_tools, tmp_path):
    env, calls = fake_tools()
    job_dir = tmp_path / "job"
    result = cli("launch", "submit", "--system", "fugaku", "--nodes", "8", "--group", "hp1", "--job-dir",
                 str(job_dir), env=env)
    assert result.returncode == 0, result.stderr
    assert "submitted 12345678" in result.stdout
    assert cli("launch", "status", "--system", "fugaku", env=env).stdout.splitlines() == [
        "12345678  cosmo-n8  running  (RUN)", "12345679  cosmo-n16  queued  (QUE)"]
    assert cli("launch", "cancel", "--system", "fugaku", "12345678", env=env).returncode == 0
    # pjstat before pjsub: the user's jobs of that name, should pjsub's reply be unreadable.
    assert calls.read_text().splitlines() == ["pjstat", f"pjsub {job_dir}/job.sh", "pjstat", "pjdel 12345678"]


def test_uge_submit_dry_run_and_status(fake_tools, tmp_path):
    env, calls = fake_tools({"qsub": 'Your job 1234567 ("cosmo") has been submitted\n', "qstat": UGE_QSTAT})
    dry = cli("launch", "submit", "--system", "abci2", "--nodes", "2", "--group", "gaa5", "--job-dir",
              str(tmp_path / "j"), "--dry-run", env=env)
    assert dry.stdout.strip() == f"qsub -g gaa5 {tmp_path}/j/job.sh"
    assert not calls.exists()  # a dry run submits nothing
    real = cli("launch", "submit", "--system", "abci2", "--nodes", "2", "--group", "gaa5", "--job-dir",
               str(tmp_path / "j"), env=env)
    assert "submitted 1234567" in real.stdout
    states = status(load_system("abci2"), output=UGE_QSTAT)
    assert [(s.job_id, s.state) for s in states] == [("1234567", "running"), ("1234568", "queued")]


def test_pbs_submit_and_status(fake_tools, tmp_path):
    env, calls = fake_tools({"qsub": "1234.pbs1\n", "qstat": PBS_QSTAT})
    result = cli("launch", "submit", "--system", "abci3", "--nodes", "2", "--group", "gaa5", "--job-dir",
                 str(tmp_path / "j"), env=env)
    assert "submitted 1234.pbs1" in result.stdout
    assert cli("launch", "status", "--system", "abci3", "1234.pbs1", env=env).stdout.splitlines() == [
        "1234.pbs1  cosmo  running  (R)", "1235.pbs1  cosmo2  queued  (Q)"]
    assert calls.read_text().splitlines() == ["qstat -x", f"qsub {tmp_path}/j/job.sh", "qstat -x 1234.pbs1"]


def test_a_job_directory_whose_job_is_queued_or_running_is_refused(fake_tools, tmp_path):
    env, calls = fake_tools()
    job_dir = tmp_path / "job"
    args = ["launch", "submit", "--system", "fugaku", "--nodes", "8", "--group", "hp1", "--job-dir", str(job_dir)]
    assert cli(*args, env=env).returncode == 0
    script = (job_dir / "job.sh").read_text()
    (job_dir / "job.sh").write_text(script + "# the queued job's script\n")
    again = cli(*args, "--ppn", "2", env=env)        # pjstat still shows 12345678 running
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip() == (f"mlperf-hpc: error: --job-dir {job_dir} belongs to job 12345678, which is "
                                    f"still queued or running: pass a new --job-dir, or wait for it to end")
    assert (job_dir / "job.sh").read_text() == script + "# the queued job's script\n"
    assert calls.read_text().splitlines()[-1] == "pjstat 12345678"
    env, _ = fake_tools({"pjstat": PJSTAT.splitlines()[0] + "\n"})   # it has ended
    assert cli(*args, env=env).returncode == 0


COLLECT_LOGS = REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA" / "results"


def _finished_job(path: Path, log: Path) -> Path:
    path.mkdir(parents=True)
    (path / "result.log").write_bytes(log.read_bytes())
    return path


def test_collect_never_overwrites_and_collecting_twice_changes_nothing(tmp_path):
    logs = sorted((COLLECT_LOGS / "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow").glob("result_*.txt"))
    a, b, c = (_finished_job(tmp_path / name, log) for name, log in zip("abc", logs))
    into = tmp_path / "tree"
    collect = lambda *dirs: cli("launch", "collect", *map(str, dirs), "--system", "local", "--org", "acme",  # noqa
                                "--into", str(into))
    folder = into / "acme" / "results" / "local" / "strong" / "cosmoflow"
    assert collect(a, b).returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["result_0.txt", "result_1.txt"]
    (folder / "result_0.txt").unlink()
    assert collect(c).returncode == 0
    assert (folder / "result_1.txt").read_bytes() == logs[1].read_bytes()     # B untouched
    assert (folder / "result_2.txt").read_bytes() == logs[2].read_bytes()     # C after the highest
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = collect(b, c)
    assert again.returncode == 1 and "no finished runs found" in again.stdout
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # A link planted in the tree is never written through, and a job's log
    # that links out of its directory is not copied.
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (folder / "result_7.txt").symlink_to(victim)
    d = tmp_path / "d"
    d.mkdir()
    (d / "result.log").symlink_to(logs[3])
    e = _finished_job(tmp_path / "e", logs[4])
    assert collect(d, e).returncode == 0
    assert victim.read_text() == "mine" and (folder / "result_8.txt").read_bytes() == logs[4].read_bytes()
    assert logs[3].read_bytes() not in [p.read_bytes() for p in folder.iterdir() if not p.is_symlink()]


def test_collect_refuses_a_tree_that_links_out_and_creates_nothing_there(tmp_path):
    log = sorted((COLLECT_LOGS / "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow").glob("result_*.txt"))[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "tree" / "acme").mkdir(parents=True)
    (tmp_path / "tree" / "acme" / "results").symlink_to(elsewhere)
    result = cli("launch", "collect", str(_finished_job(tmp_path / "a", log)), "--system", "local", "--org", "acme",
                 "--into", str(tmp_path / "tree"))
    assert result.returncode == 2 and "leads out of --into" in result.stderr and result.stderr.count("\n") == 1
    assert list(elsewhere.iterdir()) == []


def test_collect_merges_the_system_description(tmp_path):
    logs = sorted((COLLECT_LOGS / "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow").glob("result_*.txt"))
    into = tmp_path / "tree"
    cli("launch", "collect", str(_finished_job(tmp_path / "a", logs[0])), "--system", "local", "--org", "acme",
        "--into", str(into))
    path = into / "acme" / "systems" / "local.json"
    description = json.loads(path.read_text())
    description.update(host_memory_capacity="24 GB", operating_system="Debian 12")
    path.write_text(json.dumps(description))
    cli("launch", "collect", str(_finished_job(tmp_path / "b", logs[1])), "--system", "local", "--org", "acme",
        "--into", str(into))
    merged = json.loads(path.read_text())
    assert merged["host_memory_capacity"] == "24 GB" and merged["operating_system"] == "Debian 12"
    assert merged["number_of_nodes"] == "64" and merged["submitter"] == "acme"


def test_sweep_renders_every_point_and_writes_a_manifest(tmp_path):
    result = cli("launch", "sweep", "--system", "fugaku", "--nodes", "1,2,4,8", "--layouts", "data,hybrid:4x1",
                 "--ppn", "4", "--group", "hp1", "--job-dir", str(tmp_path / "sw"), "--dry-run",
                 "--config", str(REPO / "cosmoflow" / "configs" / "cosmo.yaml"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "sw" / "manifest.json").read_text())
    points = [(p["layout"], p["spatial"], p["nodes"]) for p in manifest["points"]]
    assert points == [(layout, split, n) for n in (1, 2, 4, 8) for layout, split in (("data", None), ("hybrid", "4x1"))]
    assert all(p["command"][0] == "pjsub" and p["job_id"] is None for p in manifest["points"])
    assert all(Path(p["script"]).is_file() for p in manifest["points"])


# --- real local jobs -------------------------------------------------------------

def _local_env(tmp_path):
    return {**MPI_ENV, "TMPDIR": str(tmp_path)}


@pytest.mark.slow
@pytest.mark.mpi
def test_local_two_rank_sweep_runs_and_is_collected(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 32, "n_valid": 32, "n_epochs": 2},
                          train={"target": 5.0})  # reached by any first epoch
    sweep = cli("launch", "sweep", "--system", "local", "--nodes", "1", "--ppn", "2", "--layouts", "data",
                "--config", str(config), "--seed", "3", "--job-dir", str(tmp_path / "sw"), env=_local_env(tmp_path),
                timeout=600)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    (point,) = json.loads((tmp_path / "sw" / "manifest.json").read_text())["points"]
    assert (Path(point["job_dir"]) / "exit_code").read_text().strip() == "0", \
        (Path(point["job_dir"]) / "job.out").read_text()[-3000:]
    collected = cli("launch", "collect", str(tmp_path / "sw"), "--system", "local", "--org", "acme",
                    "--into", str(tmp_path / "logs"))
    assert collected.returncode == 0, collected.stderr
    result = tmp_path / "logs" / "acme" / "results" / "local" / "strong" / "cosmoflow" / "result_0.txt"
    records = [json.loads(ln.split(":::MLLOG", 1)[1]) for ln in result.read_text().splitlines()]
    values = {r["key"]: r["value"] for r in records}
    assert values["number_of_ranks"] == 2 and values["seed"] == 3
    assert any(r["key"] == "staging_stop" for r in records)
    system = json.loads((tmp_path / "logs" / "acme" / "systems" / "local.json").read_text())
    assert system["submitter"] == "acme" and system["division"] == "closed"


@pytest.mark.slow
@pytest.mark.mpi
def test_local_weak_scaling_job_of_two_instances(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 32, "n_valid": 32, "n_epochs": 2},
                          train={"target": 5.0})  # reached by any first epoch
    job_dir = tmp_path / "weak"
    submit = cli("launch", "submit", "--system", "local", "--nodes", "1", "--ppn", "1", "--instances", "2",
                 "--config", str(config), "--seed", "10", "--job-dir", str(job_dir), env=_local_env(tmp_path),
                 timeout=600)
    assert submit.returncode == 0, submit.stderr[-3000:]
    assert (job_dir / "exit_code").read_text().strip() == "0", (job_dir / "job.out").read_text()[-3000:]
    assert sorted(p.name for p in (job_dir / "gate").iterdir()) == ["ready.0", "ready.1"]
    cli("launch", "collect", str(job_dir), "--system", "local", "--org", "acme", "--into", str(tmp_path / "logs"))
    weak = tmp_path / "logs" / "acme" / "results" / "local" / "weak" / "cosmoflow"
    logs = sorted(weak.glob("result_*.txt"))
    assert len(logs) == 2
    starts = []
    for log in logs:
        records = [json.loads(ln.split(":::MLLOG", 1)[1]) for ln in log.read_text().splitlines()]
        run_start = next(r for r in records if r["key"] == "run_start")
        starts.append(run_start["time_ms"])
        assert run_start["metadata"]["instance_id"] in (0, 1)
    assert abs(starts[0] - starts[1]) < 5000  # the instances started their timed runs together


def test_status_parses_qstat_dash_j_of_grid_engine():
    (job,) = status(load_system("abci2"), output=UGE_QSTAT_J)
    assert (job.job_id, job.name, job.state, job.raw) == ("1234567", "cosmo-n8", "running", "r")


def test_status_parses_qstat_dash_f_of_pbs():
    jobs = status(load_system("abci3"), output=PBS_QSTAT_F)
    assert [(j.job_id, j.name, j.state) for j in jobs] == [("1234.pbs1", "cosmo", "running"),
                                                          ("1236.pbs1", "cosmo3", "done")]


def test_schedulers_and_launchers_come_from_their_registries(tmp_path):
    from launch import launchers, schedulers

    with pytest.raises(ValueError, match="two schedulers are called 'pjm'"):
        schedulers.register(type("AnotherPJM", (schedulers.PJM,), {}))
    with pytest.raises(ValueError, match="two launchers are called 'srun'"):
        launchers.register(type("AnotherSrun", (launchers.Srun,), {}))
    assert set(schedulers.SCHEDULERS) == {"pjm", "uge", "pbs", "slurm", "local"}
    systems = tmp_path / "systems"
    systems.mkdir()
    site = yaml.safe_load((REPO / "launch" / "systems" / "local.yaml").read_text())
    (systems / "lsf-site.yaml").write_text(yaml.safe_dump({**site, "name": "lsf-site", "scheduler": "lsf"}))
    result = cli("launch", "render", "--system", "lsf-site", "--nodes", "1", env={"MLPERF_HPC_SYSTEMS": str(systems)})
    assert result.returncode == 2 and result.stderr.strip() == (
        "mlperf-hpc: error: unknown scheduler 'lsf': use one of local, pbs, pjm, slurm, uge")
