"""setup.sh's choices, through its dry run (which changes nothing) on a copy
of the scripts, with fake tools on PATH: a module-loaded MPI compiler, no
root, no Python 3.11, a GPU."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

TOOLS = ("bash", "dirname", "basename", "sed", "grep", "uname", "readlink", "awk", "tr", "xargs", "env", "ldd",
         "cat", "head")


def _fake(bin_dir: Path, name: str, body: str) -> None:
    tool = bin_dir / name
    tool.write_text("#!/bin/bash\n" + body + "\n")
    tool.chmod(0o755)


@pytest.fixture
def sandbox(tmp_path):
    """A copy of setup.sh and its inputs, and a PATH of basic tools only."""
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("setup.sh", "requirements.txt", "constraints.txt"):
        shutil.copy(REPO / name, root / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    _fake(bin_dir, "id", 'echo 1000')                    # not root

    def run(*args, python=sys.executable, extra=None):
        env = {"PATH": str(bin_dir), "HOME": str(tmp_path), **({"PYTHON": python} if python else {}),
               **(extra or {})}
        return subprocess.run(["bash", str(root / "setup.sh"), "--dry-run", *args], capture_output=True, text=True,
                              env=env, timeout=60)

    return run, bin_dir, tmp_path


def _module_mpi(bin_dir: Path, prefix: Path) -> Path:
    """A module-loaded MPI: its compiler wrapper on PATH, its library beside it."""
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "lib" / "libmpi.so").write_text("")
    _fake(prefix / "bin", "mpicc", f'echo "gcc -I{prefix}/include -L{prefix}/lib -lmpi"')
    (bin_dir / "mpicc").symlink_to(prefix / "bin" / "mpicc")
    return prefix / "bin" / "mpicc"


def test_a_module_loaded_mpi_is_used_without_root_or_apt(sandbox):
    run, bin_dir, tmp = sandbox
    mpicc = _module_mpi(bin_dir, tmp / "hpcx")
    result = run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"MPI: {bin_dir / 'mpicc'} (from PATH" in out and "apt-get" not in out
    assert f"MPICC={bin_dir / 'mpicc'}" in out and "--no-binary=mpi4py mpi4py" in out
    horovod = next(ln for ln in out.splitlines() if "horovod==0.28.1" in ln)
    assert "HOROVOD_WITH_MPI=1" in horovod and f"MPI_HOME={tmp}" in horovod and f"PATH={bin_dir}" in horovod
    assert "tensorflow-cpu==2.15.1" in out and "HOROVOD_GPU_OPERATIONS" not in out
    assert not (tmp / "checkout" / ".venv").exists()            # a dry run changes nothing
    assert mpicc.exists()


def test_without_mpi_and_without_root_it_says_what_to_load(sandbox):
    run, _, _ = sandbox
    result = run()
    assert result.returncode == 1
    assert result.stderr.startswith("setup: error: no MPI compiler (mpicc, mpifcc) on PATH: load the site's MPI")
    assert "apt-get" not in result.stdout


def test_fujitsu_mpi_is_found(sandbox):
    run, bin_dir, tmp = sandbox
    prefix = tmp / "fjmpi"
    (prefix / "bin").mkdir(parents=True)
    _fake(prefix / "bin", "mpifcc", 'echo "fcc -Nclang -lmpi"')
    (bin_dir / "mpifcc").symlink_to(prefix / "bin" / "mpifcc")
    result = run()
    assert result.returncode == 0, result.stderr
    assert f"MPI: {bin_dir / 'mpifcc'}" in result.stdout


def test_without_python_3_11_uv_installs_one(sandbox):
    run, bin_dir, tmp = sandbox
    _module_mpi(bin_dir, tmp / "ompi")
    _fake(bin_dir, "python3", 'if [ "$1" = --version ]; then echo "Python 3.12.4"; else exit 1; fi')
    result = run(python=None)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "no 3.11 found (Python 3.12.4); installing one with uv" in out
    assert f"+ {bin_dir / 'python3'} -m pip install --user -q uv" in out
    assert f"+ {tmp}/.local/bin/uv python install 3.11" in out
    assert "+ <uv's python3.11> -m venv .venv" in out


def test_gpu_installs_the_cuda_build_and_nccl_horovod(sandbox):
    run, bin_dir, tmp = sandbox
    _module_mpi(bin_dir, tmp / "hpcx")
    _fake(bin_dir, "nvidia-smi", 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"')
    result = run()                                   # found by nvidia-smi, no flag needed
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "device: GPU found by nvidia-smi" in out and "tensorflow[and-cuda]==2.15.1" in out
    horovod = next(ln for ln in out.splitlines() if "horovod==0.28.1" in ln)
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in horovod and "nvidia/nccl" in horovod and "cuda_nvcc/bin" in horovod
    forced = run("--cpu")
    assert "tensorflow-cpu==2.15.1" in forced.stdout


def test_an_unknown_option_is_refused():
    result = subprocess.run(["bash", str(REPO / "setup.sh"), "--gpus"], capture_output=True, text=True,
                            env={**os.environ})
    assert result.returncode == 2 and "unknown option '--gpus'" in result.stderr
