"""Process topology and parallel layouts: single process, data-parallel
(Horovod), and spatial / hybrid model-parallel (Mesh TensorFlow over Horovod)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import HarnessError
from parallel.topology import LAYOUTS, SPLIT_LAYOUTS

if TYPE_CHECKING:
    from parallel.layouts import Layout


def make_layout(name: str, split: tuple[int, int] = (1, 1)) -> "Layout":
    """The layout called ``name``; imports Horovod (and Mesh TF) only when
    the layout needs them."""
    if name == "single":
        from parallel.layouts import SingleProcess

        return SingleProcess()
    if name == "data":
        from parallel.layouts import DataParallel

        return DataParallel()
    if name in SPLIT_LAYOUTS:
        from parallel.mesh.layout import MeshParallel

        return MeshParallel(name, split)
    raise HarnessError(f"unknown layout '{name}': use one of {', '.join(LAYOUTS)}")
