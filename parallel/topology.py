"""Layout names, spatial splits, the process-count rule, and where this
process sits in the job. No TensorFlow: ``launch`` checks jobs by the same
rules the training command applies."""
from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import HarnessError

LAYOUTS = ("single", "data", "spatial", "hybrid")
SPLIT_LAYOUTS = ("spatial", "hybrid")       # each sample split over a group of processes
GPUS_PER_NODE_ENV = "MLPERF_HPC_GPUS_PER_NODE"   # GPU systems' job scripts set it: each rank must find one


def parse_split(text: str) -> tuple[int, int]:
    """A spatial split 'AxB' (blocks along a sample's first and second split
    axis: CosmoFlow depth x height, DeepCAM height x width)."""
    if not re.match(r"^\d{1,4}x\d{1,4}$", text) or 0 in tuple(int(p) for p in text.split("x")):
        raise HarnessError(f"--spatial '{text}' must look like AxB with positive sizes, e.g. 4x1")
    first, second = (int(p) for p in text.split("x"))
    return first, second


def layout_split(layout: str, spatial: str | None) -> tuple[int, int]:
    """The split a layout runs with: --spatial for the split layouts (which
    need it), 1x1 for the others (which refuse it)."""
    if layout not in LAYOUTS:
        raise HarnessError(f"unknown layout '{layout}': use one of {', '.join(LAYOUTS)}")
    if layout in SPLIT_LAYOUTS:
        if spatial is None:
            raise HarnessError(f"--layout {layout} needs --spatial AxB, e.g. --spatial 2x1")
        return parse_split(spatial)
    if spatial is not None:
        raise HarnessError(f"--spatial '{spatial}' needs --layout spatial or hybrid")
    return (1, 1)


def data_groups(layout: str, split: tuple[int, int], processes: int) -> int:
    """How many data-parallel replicas ``processes`` ranks form under a
    layout, or a one-line refusal of a count that cannot work."""
    per_sample = split[0] * split[1]
    if layout == "single" and processes != 1:
        raise HarnessError(f"--layout single runs one process, not {processes}: use --layout data under mpirun")
    if processes % per_sample:
        raise HarnessError(f"{processes} processes are not a multiple of the --spatial {split[0]}x{split[1]} split "
                           f"({per_sample} processes per sample): run a multiple of {per_sample} processes")
    if layout == "spatial" and processes != per_sample:
        raise HarnessError(f"--layout spatial --spatial {split[0]}x{split[1]} runs on exactly {per_sample} "
                           f"processes, not {processes}: use --layout hybrid for {processes // per_sample} "
                           f"data-parallel groups")
    return processes // per_sample


@dataclass(frozen=True)
class ProcessTopology:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    nodes: int = 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0
