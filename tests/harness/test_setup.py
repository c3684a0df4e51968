"""setup.sh's choices, through its dry run (which changes nothing) on a copy
of the scripts, with fake tools on PATH: a module-loaded MPI compiler, no
root, no Python 3.11, a GPU."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import REPO

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
    shutil.copy(REPO / "setup.sh", root / "setup.sh")
    shutil.copytree(REPO / "locks", root / "locks")
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
    assert f"MPICC={bin_dir / 'mpicc'}" in out and "--require-hashes --no-binary=mpi4py -r locks/cpu-x86_64.txt" in out
    horovod = next(ln for ln in out.splitlines() if "locks/horovod.txt" in ln)
    assert "HOROVOD_WITH_MPI=1" in horovod and f"MPI_HOME={tmp}" in horovod and f"PATH={bin_dir}" in horovod
    assert "packages: locks/cpu-x86_64.txt (tensorflow-cpu==2.15.1)" in out and "HOROVOD_GPU_OPERATIONS" not in out
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
    assert f"+ {bin_dir / 'python3'} -m pip install --user -q --require-hashes --no-deps -r locks/tools.txt" in out
    assert f"+ {tmp}/.local/bin/uv python install 3.11.18" in out
    assert "+ <uv's python3.11.18> -m venv .venv" in out


def test_gpu_installs_the_cuda_build_and_nccl_horovod(sandbox):
    run, bin_dir, tmp = sandbox
    _module_mpi(bin_dir, tmp / "hpcx")
    _fake(bin_dir, "nvidia-smi", 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"')
    result = run()                                   # found by nvidia-smi, no flag needed
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "device: GPU found by nvidia-smi" in out and "packages: locks/gpu-x86_64.txt (tensorflow==2.15.1)" in out
    horovod = next(ln for ln in out.splitlines() if "locks/horovod.txt" in ln)
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in horovod and "nvidia/nccl" in horovod and "cuda_nvcc/bin" in horovod
    forced = run("--cpu")
    assert "packages: locks/cpu-x86_64.txt (tensorflow-cpu==2.15.1)" in forced.stdout


def test_an_unknown_option_is_refused():
    result = subprocess.run(["bash", str(REPO / "setup.sh"), "--gpus"], capture_output=True, text=True,
                            env={**os.environ})
    assert result.returncode == 2 and "unknown option '--gpus'" in result.stderr


def _locked(path: Path) -> dict[str, str]:
    """name -> version of every package a lock file pins."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\]+)", path.read_text(), re.MULTILINE)
    return {_normal(name): version for name, version in pins}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_venv_holds_exactly_the_locked_packages():
    """What setup.sh installed (this suite runs in its venv) is the lock for
    this machine and device, every version exact, nothing more."""
    import tensorflow as tf

    device = "gpu" if tf.test.is_built_with_cuda() else "cpu"
    expected = {**_locked(REPO / "locks" / f"{device}-{platform.machine()}.txt"),
                **_locked(REPO / "locks" / "horovod.txt")}
    site_packages = sysconfig.get_paths()["purelib"]      # not setuptools' vendored copies
    installed = {_normal(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions(path=[site_packages])}
    installed.pop("mlperf-hpc")
    assert installed == expected


def test_every_lock_pins_every_package_with_hashes():
    for lock in (REPO / "locks").glob("*.txt"):
        entries = re.split(r"\n(?=[A-Za-z])", lock.read_text().split("\n", 2)[2].strip())
        assert entries and all("==" in e.splitlines()[0] and "--hash=sha256:" in e for e in entries), lock
    # The targets setup.sh chooses among, each with its TensorFlow build.
    assert _locked(REPO / "locks" / "cpu-x86_64.txt")["tensorflow-cpu"] == "2.15.1"
    assert _locked(REPO / "locks" / "gpu-x86_64.txt")["nvidia-cudnn-cu12"] == "8.9.4.25"
    assert _locked(REPO / "locks" / "cpu-aarch64.txt")["tensorflow-cpu-aws"] == "2.15.1"
    assert _locked(REPO / "locks" / "horovod.txt") == {"horovod": "0.28.1"}


def test_version_names_the_release_and_the_commit():
    import tomllib

    released = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    result = subprocess.run([sys.executable, "-m", "mlperf_hpc.cli", "--version"], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 0 and result.stdout.startswith(f"mlperf-hpc {released} (commit {commit[:12]}")
    assert f"## {released} " in (REPO / "CHANGELOG.md").read_text()
