"""Synthetic CosmoFlow data whose four targets really determine the volume.

Each sample is a log-normal random field (the usual toy model of the matter
density) observed at four "redshifts" (the 4 channels, with a growth factor
shrinking the fluctuations towards earlier times), turned into int16 particle
counts by Poisson sampling. The four parameters, uniform in [-1, 1] like the
reference's scaled targets, set:

  p0  mean density            (log of the mean count)
  p1  fluctuation amplitude   (standard deviation of the log-density today)
  p2  spectral slope          (P(k) ~ k^n, with a fixed small-scale cut-off)
  p3  growth rate             (how fast fluctuations shrink, channel to channel)

so a CNN can regress them from counts, as CosmoFlow regresses cosmological
parameters from N-body volumes. Deterministic given the seed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import HarnessError
from core.outputs import room_for
from core.synth_pool import run_pool

N_CHANNELS = 4          # redshifts, as in the reference volumes
SMOOTHING_VOXELS = 0.6  # Gaussian cut-off of P(k), keeps the slope visible


def field_parameters(p: np.ndarray) -> dict[str, float]:
    """Map scaled targets in [-1, 1] to the field's physical knobs."""
    return {
        "mean_count": float(20.0 * np.exp(0.8 * p[0])),
        "sigma": float(0.6 + 0.3 * p[1]),
        "slope": float(-1.5 + 1.5 * p[2]),
        "growth_rate": float(0.3 + 0.2 * p[3]),
    }


def synth_volume(p: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One size^3 x 4 int16 volume for target vector p."""
    knobs = field_parameters(p)
    k = np.fft.fftfreq(size) * size
    # |k| in units of the fundamental mode; the mean (k = 0) is removed below.
    kz, ky, kx = np.meshgrid(k, k, np.fft.rfftfreq(size) * size, indexing="ij")
    kk = np.sqrt(kx ** 2 + ky ** 2 + kz ** 2)
    kk[0, 0, 0] = 1.0
    amplitude = kk ** (knobs["slope"] / 2) * np.exp(-0.5 * (kk * 2 * np.pi * SMOOTHING_VOXELS / size) ** 2)
    amplitude[0, 0, 0] = 0.0
    noise = np.fft.rfftn(rng.standard_normal((size, size, size)).astype(np.float32))
    delta = np.fft.irfftn(noise * amplitude, s=(size, size, size)).astype(np.float32)
    delta /= delta.std() + 1e-12
    volume = np.empty((size, size, size, N_CHANNELS), np.int16)
    for c in range(N_CHANNELS):
        s = knobs["sigma"] * np.exp(-knobs["growth_rate"] * c)
        density = knobs["mean_count"] * np.exp(s * delta - 0.5 * s * s)
        volume[..., c] = np.minimum(rng.poisson(density), np.iinfo(np.int16).max)
    return volume


def _write_file(job: tuple) -> None:
    """Write one file of samples; seeded by (seed, split, file index)."""
    from cosmoflow import data  # TensorFlow is only needed when writing

    path, split_index, file_index, count, size, fmt, seed, compression = job
    rng = np.random.default_rng([seed, split_index, file_index])
    targets = rng.uniform(-1, 1, (count, 4)).astype(np.float32)
    volumes = np.stack([synth_volume(t, size, rng) for t in targets])
    tmp = Path(path).with_name(Path(path).name + ".part")
    if fmt == "tfrecord":
        data.write_tfrecord(tmp, volumes, targets, compression)
    else:
        data.write_hdf5(tmp, volumes, targets)
    tmp.replace(path)  # a killed generator never leaves a half-written file


def generate(out: str | Path, size: int, n_train: int, n_valid: int, fmt: str = "tfrecord",
             samples_per_file: int = 1, seed: int = 0, compression: str | None = "GZIP",
             progress: bool = True, workers: int | None = None) -> Path:
    """Write ``train/`` and ``validation/`` under ``out`` in the reference
    format, using a pool of processes (one per core by default)."""
    from cosmoflow.data import SUFFIX

    out = Path(out)
    jobs = []
    for split_index, (split, n_samples) in enumerate((("train", n_train), ("validation", n_valid))):
        (out / split).mkdir(parents=True, exist_ok=True)
        for i in range(-(-n_samples // samples_per_file)):
            count = min(samples_per_file, n_samples - i * samples_per_file)
            path = out / split / f"cosmo_{split}_{i:06d}{SUFFIX[fmt]}"
            jobs.append((str(path), split_index, i, count, size, fmt, seed, compression))
    for _ in run_pool("cosmoflow", _write_file, jobs, progress, workers):
        pass
    return out


def synthesise(out: str | Path, n_train: int, n_valid: int, seed: int, options: dict, progress: bool = True) -> str:
    """``mlperf-hpc data synth cosmoflow``: the dataset, and what was written."""
    size = options["size"]
    if size % 32:
        raise HarnessError(f"--size {size} must be a multiple of 32: the model pools the volume five times")
    # int16 counts, which GZIP about halves
    room_for(out, (n_train + n_valid) * size ** 3 * N_CHANNELS, "--n-train/--n-valid/--size")
    path = generate(out, size, n_train, n_valid, options["format"], options["samples_per_file"], seed,
                    progress=progress)
    return f"wrote {n_train} train + {n_valid} validation {size}^3x4 samples ({options['format']}) to {path}"
