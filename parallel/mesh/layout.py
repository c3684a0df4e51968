"""Spatial and hybrid layouts: each sample split across processes (Mesh TF).

The job is one Mesh TensorFlow mesh of shape ``b:G; s0:A; s1:B`` over its
G·A·B ranks: G data-parallel groups, each splitting every sample into A x B
blocks along the model's two split dimensions (CosmoFlow's depth and height,
DeepCAM's height and width; ``spatial`` is the one-group case). The
benchmark's Mesh TF model (a ``MeshModel``) lays its batch or group dimension
on ``b`` and its block dimensions on ``s0`` and ``s1``; ``HorovodMeshImpl``
lowers each rank's slice and runs the halo exchanges, block reductions and
the gradient sums across groups as Horovod collectives in the matching
process sets. Every rank of a group reads the group's share of the data and
keeps its own block.

Mesh TF builds compat.v1 graphs, so the trainer owns a graph and a session;
the eager input pipeline feeds it, and the driver sees the same trainer
interface as for Keras models.
"""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from core.benchmark import Benchmark
from parallel.layouts import DataParallel
from parallel.mesh.horovod_impl import HorovodMeshImpl, mesh_shape, mtf, required_process_sets
from parallel.mesh.trainer import MeshTrainer


def world_size() -> int:
    """The MPI job's size, known before Horovod starts (it needs the process
    sets at init)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size()



class MeshParallel(DataParallel):
    """G data-parallel groups x a D x H split of every sample."""

    def __init__(self, name: str, split: tuple[int, int]):
        self.name = name
        self.split = split
        self.mesh_shape = mesh_shape(name, split, world_size())
        # A mesh model issues a distinct collective per halo and block sum
        # (thousands for DeepCAM); Horovod's response cache holds 1,024 by default.
        os.environ.setdefault("HOROVOD_CACHE_CAPACITY", "16384")
        # They come one after another along the forward and backward pass,
        # each waiting for Horovod's next negotiation cycle (1 ms by default,
        # 5 ms in some builds): a split runs several times faster at 0.1 ms
        # (docs/performance.md). An unsplit sample has no such collectives,
        # and the short cycle costs compute (the background thread's cycles
        # take part of a core), so it is set only where a sample is split.
        if self.ranks_per_sample > 1:
            os.environ.setdefault("HOROVOD_CYCLE_TIME", "0.1")
        super().__init__(process_sets=required_process_sets(self.mesh_shape))
        self.group, *block = mtf.pnum_to_processor_coordinates(self.mesh_shape, self.topology.rank)
        self.block_coordinates: tuple[int, int] = tuple(block)      # this rank's block of each sample

    @property
    def label(self) -> str:
        return f"{self.name}:{self.split[0]}x{self.split[1]}"         # as in ``launch sweep --layouts``

    @property
    def data_shards(self) -> int:
        return self.mesh_shape[0].size

    @property
    def data_shard_index(self) -> int:
        return self.group

    @property
    def ranks_per_sample(self) -> int:
        return self.split[0] * self.split[1]

    def mesh_impl(self, layout_rules: str) -> HorovodMeshImpl:
        """The mesh for a model whose tensor dimensions ``layout_rules`` maps
        to the axes b (groups), s0 and s1 (first and second split axis)."""
        return HorovodMeshImpl(self.mesh_shape, mtf.convert_to_layout_rules(layout_rules), self.hvd,
                               self.process_sets)

    def make_trainer(self, benchmark: Benchmark, config: Any, seed: int) -> "MeshTrainer":
        return MeshTrainer(benchmark, config, self, seed)

    def allreduce_sum(self, value: tf.Tensor) -> tf.Tensor:
        # Every rank of a group holds the group's metric sums; count them once.
        first_of_group = self.block_coordinates == (0, 0)
        return super().allreduce_sum(value if first_of_group else tf.zeros_like(value))
