"""Where this process sits in the job."""
from __future__ import annotations

from dataclasses import dataclass


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
