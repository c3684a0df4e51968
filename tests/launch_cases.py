"""The job specs whose rendered scripts are pinned as golden files in
tests/golden/ (regenerate with: python -m tests.launch_cases, then review)."""
from __future__ import annotations

from pathlib import Path

from launch.job import JobSpec
from launch.render import REPO, render
from launch.system import load_system

GOLDEN = Path(__file__).parent / "golden"

CASES = {
    "fugaku_data": dict(system="fugaku", nodes=8, ppn=4, group="hp240123"),
    "fugaku_hybrid_4x1": dict(system="fugaku", nodes=8, ppn=1, layout="hybrid", spatial="4x1", shape="2x2x2",
                              group="hp240123", rscgrp="small", elapse="2:00:00"),
    "fugaku_weak": dict(system="fugaku", nodes=4, ppn=1, instances=2, shape="2x2x2", group="hp240123", seed=100),
    "abci2_data": dict(system="abci2", nodes=2, group="gaa50000"),
    "abci2_weak": dict(system="abci2", nodes=2, instances=2, group="gaa50000"),
    "abci3_hybrid_2x2": dict(system="abci3", nodes=2, layout="hybrid", spatial="2x2", group="gaa50000",
                             preflight=True),
    "local_data": dict(system="local", nodes=1, ppn=2),
    "local_pack": dict(system="local", nodes=1, ppn=2, seed=40, runs=3),
    "slurm_data": dict(system="slurm-gpu", nodes=2, group="m4242"),
    "slurm_weak": dict(system="slurm-gpu", nodes=2, instances=2, group="m4242", seed=7),
}


def job_for(case: str) -> JobSpec:
    spec = dict(CASES[case])
    system = load_system(spec.pop("system"))
    return JobSpec(system=system, benchmark="cosmoflow", nodes=spec.pop("nodes"), layout=spec.pop("layout", "data"),
                   spatial=spec.pop("spatial", None), config=str(REPO / "cosmoflow" / "configs" / "cosmo.yaml"),
                   data_dir="/shared/data/cosmoflow", elapse=spec.pop("elapse", "1:00:00"), name=case.replace("_", "-"),
                   group=spec.pop("group", None), resource_group=spec.pop("rscgrp", None),
                   procs_per_node=spec.pop("ppn", None), instances=spec.pop("instances", 1),
                   node_shape=spec.pop("shape", None), job_dir=f"/jobs/{case}", seed=spec.pop("seed", None),
                   preflight=spec.pop("preflight", False), runs=spec.pop("runs", 1))


def rendered_text(case: str) -> str:
    """The script with this checkout's path replaced by a placeholder."""
    return render(job_for(case)).script.replace(str(REPO), "@REPO@")


def rendered_wrapper(case: str) -> str | None:
    """The per-rank binding wrapper the job runs its ranks through, if any."""
    return render(job_for(case)).files.get("bind.sh")


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name in CASES:
        (GOLDEN / f"{name}.sh").write_text(rendered_text(name))
        print(f"wrote tests/golden/{name}.sh")
        wrapper = rendered_wrapper(name)
        if wrapper:
            (GOLDEN / f"{name}.bind.sh").write_text(wrapper)
            print(f"wrote tests/golden/{name}.bind.sh")
