"""Helpers the tests share (import them from here, not from conftest):
running the real CLI (in a subprocess or under mpirun), small configs, and
reading logs, weights and page-cache residency."""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``mlperf-hpc ARGS`` as a real subprocess."""
    return subprocess.run([PYTHON, "-m", "mlperf_hpc.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def mpirun_python(n: int, *argv: str, timeout: float = 900, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python ARGV`` on ``n`` real MPI ranks (one thread each), with the repo importable."""
    env = {**os.environ, **MPI_ENV, "MLPERF_HPC_THREADS": "1", "PYTHONPATH": str(REPO), **(extra_env or {})}
    exports = [x for name in ("MLPERF_HPC_THREADS", "PYTHONUNBUFFERED", "PYTHONPATH", *(extra_env or {}))
               for x in ("-x", name)]
    command = ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none", *exports, PYTHON, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def mpirun(n: int, *args: str, timeout: float = 900, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``mlperf-hpc ARGS`` on ``n`` real MPI ranks (one thread each)."""
    return mpirun_python(n, "-m", "mlperf_hpc.cli", *args, timeout=timeout, extra_env=extra_env)


def write_config(path: Path, data_dir: Path, **sections) -> Path:
    """A small CosmoFlow config: the mini config with section overrides."""
    config = yaml.safe_load((REPO / "cosmoflow" / "configs" / "mini.yaml").read_text())
    config["data"]["data_dir"] = str(data_dir)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config))
    return path


def log_records(path: Path) -> list[dict]:
    """The MLLOG records of a log file."""
    return [json.loads(line.split(":::MLLOG", 1)[1]) for line in path.read_text().splitlines()
            if ":::MLLOG" in line]


def read_weights(path: Path) -> dict:
    """Every dataset of a Keras HDF5 weights file, by name."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def doctor(src: Path, dst: Path, key: str, old: str, new: str) -> Path:
    """Copy a log, replacing ``old`` by ``new`` in the lines of one key."""
    lines = src.read_text().splitlines()
    dst.write_text("\n".join(ln.replace(old, new) if f'"key": "{key}"' in ln else ln for ln in lines) + "\n")
    return dst



_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_pages(path: str | Path) -> tuple[int, int]:
    """(pages of the file in the page cache, pages of the file), from
    ``mincore`` on a mapping of it: what eviction is measured by."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, 0
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, f.fileno(), 0)
        if address in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
        try:
            pages = -(-size // mmap.PAGESIZE)
            vector = (ctypes.c_ubyte * pages)()
            if _libc.mincore(address, size, vector) != 0:
                raise OSError(ctypes.get_errno(), f"mincore of {path} failed")
            return sum(v & 1 for v in vector), pages
        finally:
            _libc.munmap(address, size)
