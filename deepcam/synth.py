"""Synthetic DeepCAM data: climate-like fields with labelled cyclones and
atmospheric rivers, in the reference layout at any resolution.

Each of the 16 channels (named after the reference's CAM5 variables) is a
smooth random background with its own offset, scale and latitude gradient.
On top of it:

  tropical cyclones   compact vortices in the tropics: a pressure depression
                      (PSL, PS), a rotating wind field (U/V at 850 hPa and the
                      surface), heavy precipitation (PRECT) and moisture (TMQ);
                      labelled 1 inside the radius of the precipitation disc
  atmospheric rivers  long narrow curved bands of water vapour (TMQ, QREFHT)
                      and wind, running from the tropics towards the
                      mid-latitudes; labelled 2 inside the band

Features have sharp but anti-aliased edges, so segmentation is learnable and
the labels agree with what the channels show. As in the real data most
pixels are background (about 95%; cyclones about 1%, rivers about 4%).
Deterministic given the seed; sizes scale with the resolution.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import HarnessError
from core.outputs import room_for
from core.synth_pool import run_pool
from deepcam.config import check_shape

CHANNELS = ["TMQ", "U850", "V850", "UBOT", "VBOT", "QREFHT", "PS", "PSL", "T200", "T500", "PRECT", "TS",
            "TREFHT", "Z1000", "Z200", "ZBOT"]
# Per channel: offset and scale of the background (arbitrary physical-ish units).
OFFSET = np.linspace(-2.0, 5.0, len(CHANNELS)).astype(np.float32)
SCALE = np.linspace(0.5, 2.0, len(CHANNELS)).astype(np.float32)
C = {name: i for i, name in enumerate(CHANNELS)}


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int = 8) -> np.ndarray:
    """A smooth random field: bilinear interpolation of a coarse Gaussian grid."""
    coarse = rng.standard_normal((cells + 1, cells * width // height + 1)).astype(np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1, height, dtype=np.float32)
    xs = np.linspace(0, coarse.shape[1] - 1, width, dtype=np.float32)
    y0, x0 = np.floor(ys).astype(int).clip(0, coarse.shape[0] - 2), np.floor(xs).astype(int).clip(0, coarse.shape[1] - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    c = coarse
    return ((1 - fy) * (1 - fx) * c[y0][:, x0] + (1 - fy) * fx * c[y0][:, x0 + 1]
            + fy * (1 - fx) * c[y0 + 1][:, x0] + fy * fx * c[y0 + 1][:, x0 + 1])


def _inside(distance: np.ndarray, radius: float) -> np.ndarray:
    """A step at ``radius`` with a one-pixel anti-aliased edge."""
    return np.clip(radius - distance + 0.5, 0.0, 1.0)


def _segment_distance(yy: np.ndarray, xx: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of every pixel to a polyline."""
    best = np.full(yy.shape, np.inf, np.float32)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        dy, dx = y1 - y0, x1 - x0
        t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / (dy * dy + dx * dx + 1e-9), 0.0, 1.0)
        best = np.minimum(best, np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx)))
    return best


def synth_sample(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One sample: fields [H, W, 16] float32 and labels [H, W] int32."""
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    latitude = (yy / (height - 1)) * 2 - 1                      # -1 south pole .. 1 north pole
    fields = np.empty((height, width, len(CHANNELS)), np.float32)
    for c in range(len(CHANNELS)):
        background = _smooth_noise(rng, height, width) + 0.05 * rng.standard_normal((height, width))
        fields[..., c] = OFFSET[c] + SCALE[c] * (0.5 * background - 0.8 * latitude ** 2)
    labels = np.zeros((height, width), np.int32)
    unit = height / 96.0                                      # feature sizes follow the resolution

    # Atmospheric rivers: poleward curved bands starting in the tropics.
    for _ in range(rng.integers(0, 3)):
        hemisphere = rng.choice([-1, 1])
        start = np.array([height / 2 + hemisphere * rng.uniform(0.05, 0.2) * height, rng.uniform(0, width)])
        length = rng.uniform(0.35, 0.6) * width
        angle = hemisphere * rng.uniform(0.3, 0.8)              # towards the pole, eastwards
        t = np.linspace(0, 1, 16)[:, None]
        direction = np.array([np.sin(angle), np.cos(angle)])
        normal = np.array([direction[1], -direction[0]])
        bend = rng.uniform(-0.15, 0.15) * length * np.sin(np.pi * t)
        points = start + t * length * direction + bend * normal
        half_width = rng.uniform(2.5, 4.0) * unit
        band = _inside(_segment_distance(yy, xx, points), half_width)
        fields[..., C["TMQ"]] += 3.0 * SCALE[C["TMQ"]] * band
        fields[..., C["QREFHT"]] += 2.0 * SCALE[C["QREFHT"]] * band
        fields[..., C["U850"]] += 1.5 * SCALE[C["U850"]] * band * direction[1]
        fields[..., C["V850"]] += 1.5 * SCALE[C["V850"]] * band * direction[0]
        labels[band >= 0.5] = 2

    # Tropical cyclones: compact vortices within 30% of the equator.
    for _ in range(rng.integers(0, 4)):
        cy = height / 2 + rng.uniform(-0.3, 0.3) * height
        cx = rng.uniform(0, width)
        radius = rng.uniform(4.0, 7.0) * unit
        dy, dx = yy - cy, xx - cx
        distance = np.hypot(dy, dx)
        disc = _inside(distance, radius)
        swirl = np.sign(cy - height / 2) or 1.0                 # cyclonic in each hemisphere
        wind = np.exp(-0.5 * (distance / radius) ** 2) / radius
        fields[..., C["PRECT"]] += 4.0 * SCALE[C["PRECT"]] * disc
        fields[..., C["TMQ"]] += 1.0 * SCALE[C["TMQ"]] * disc
        for name in ("PSL", "PS"):
            fields[..., C[name]] -= 3.0 * SCALE[C[name]] * disc
        for u, v in (("U850", "V850"), ("UBOT", "VBOT")):
            fields[..., C[u]] += 2.0 * SCALE[C[u]] * swirl * -dy * wind
            fields[..., C[v]] += 2.0 * SCALE[C[v]] * swirl * dx * wind
        labels[disc >= 0.5] = 1
    return fields, labels


def _write_file(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Write one sample file, seeded by (seed, split, index); returns the
    sample's per-channel min and max for stats.h5."""
    from deepcam.data import write_sample

    path, split_index, index, height, width, seed = job
    rng = np.random.default_rng([seed, split_index, index])
    fields, labels = synth_sample(rng, height, width)
    tmp = Path(path).with_name(Path(path).name + ".part")
    write_sample(tmp, fields, labels)
    tmp.replace(path)  # a killed generator never leaves a half-written file
    return fields.min(axis=(0, 1)), fields.max(axis=(0, 1))


def generate(out: str | Path, height: int, width: int, n_train: int, n_valid: int, seed: int = 0,
             progress: bool = True, workers: int | None = None) -> Path:
    """Write ``train/``, ``validation/`` and ``stats.h5`` (min and max over
    the training set, as the reference's) under ``out``."""
    from deepcam.data import write_stats
    from deepcam.facts import STATS_FILE

    out = Path(out)
    jobs = []
    for split_index, (split, n_samples) in enumerate((("train", n_train), ("validation", n_valid))):
        (out / split).mkdir(parents=True, exist_ok=True)
        for i in range(n_samples):
            jobs.append((str(out / split / f"data-{split}-{i:06d}.h5"), split_index, i, height, width, seed))
    minval = np.full(len(CHANNELS), np.inf, np.float32)
    maxval = np.full(len(CHANNELS), -np.inf, np.float32)
    for n, (low, high) in enumerate(run_pool("deepcam", _write_file, jobs, progress, workers), 1):
        if n <= n_train:
            minval, maxval = np.minimum(minval, low), np.maximum(maxval, high)
    write_stats(out / STATS_FILE, minval, maxval)
    return out


def parse_shape(text: str) -> tuple[int, int]:
    """``--shape HxW``, each side a positive multiple of the output stride."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise HarnessError(f"--shape '{text}' must look like HxW, e.g. 96x144 (full size 768x1152)")
    height, width = int(parts[0]), int(parts[1])
    try:
        check_shape(height, width)
    except HarnessError as err:
        raise HarnessError(f"--shape {text}: {err}") from None
    return height, width


def synthesise(out: str | Path, n_train: int, n_valid: int, seed: int, options: dict, progress: bool = True) -> str:
    """``mlperf-hpc data synth deepcam``: the dataset, and what was written."""
    height, width = parse_shape(options["shape"])
    # float32 fields and int32 labels, uncompressed
    room_for(out, (n_train + n_valid) * height * width * (len(CHANNELS) + 1) * 4, "--n-train/--n-valid/--shape")
    path = generate(out, height, width, n_train, n_valid, seed, progress)
    return f"wrote {n_train} train + {n_valid} validation {height}x{width}x16 samples and stats.h5 to {path}"
