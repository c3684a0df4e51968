"""Where this process sits in the job."""
from __future__ import annotations

import re
from dataclasses import dataclass

from mlperf_hpc.errors import HarnessError


def parse_split(text: str | None) -> tuple[int, int]:
    """A spatial split 'DxH' (depth x height blocks per sample); no text is 1x1."""
    if not text:
        return (1, 1)
    if not re.match(r"^\d+x\d+$", text) or 0 in tuple(int(p) for p in text.split("x")):
        raise HarnessError(f"spatial split '{text}' must look like DxH with positive sizes, e.g. 4x1")
    depth, height = (int(p) for p in text.split("x"))
    return depth, height


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
