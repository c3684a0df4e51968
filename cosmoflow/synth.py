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

import sys
import time
from pathlib import Path

import numpy as np

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


def generate(out: str | Path, size: int, n_train: int, n_valid: int, fmt: str = "tfrecord",
             samples_per_file: int = 1, seed: int = 0, compression: str | None = "GZIP",
             progress: bool = True) -> Path:
    """Write ``train/`` and ``validation/`` under ``out`` in the reference format."""
    from cosmoflow import data  # TensorFlow is only needed when writing

    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, n_samples in (("train", n_train), ("validation", n_valid)):
        directory = out / split
        directory.mkdir(parents=True, exist_ok=True)
        n_files = -(-n_samples // samples_per_file)
        start = time.time()
        for i in range(n_files):
            count = min(samples_per_file, n_samples - i * samples_per_file)
            targets = rng.uniform(-1, 1, (count, 4)).astype(np.float32)
            volumes = np.stack([synth_volume(t, size, rng) for t in targets])
            path = directory / f"cosmo_{split}_{i:06d}{data.SUFFIX[fmt]}"
            tmp = path.with_name(path.name + ".part")
            if fmt == "tfrecord":
                data.write_tfrecord(tmp, volumes, targets, compression)
            else:
                data.write_hdf5(tmp, volumes, targets)
            tmp.replace(path)  # a killed generator never leaves a half-written file
            if progress and (i + 1) % max(1, n_files // 20) == 0:
                rate = (i + 1) * samples_per_file / (time.time() - start)
                eta = (n_files - i - 1) * samples_per_file / rate
                print(f"synth cosmoflow {split}: {i + 1}/{n_files} files, {rate:.0f} samples/s, "
                      f"ETA {eta:.0f}s", file=sys.stderr, flush=True)
    return out
