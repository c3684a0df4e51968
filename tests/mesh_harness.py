"""What the Mesh TF equivalence scripts share: the trainer's own lowering of
a benchmark's mesh model on this rank, started from given Keras weights and
fed this rank's block of a batch, and the full outputs, loss and weight
gradients of its training step (before any update), the weights after that
step, the optimizer state each rank keeps, whether that step keeps any
halo-extended block for its backward pass, and how its convolutions pad."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from core.benchmark import Benchmark
from parallel.mesh.layout import MeshParallel
from parallel.mesh.trainer import MeshTrainer, named_weights


def run_mesh_model(layout: MeshParallel, benchmark: Benchmark, config: Any, keras_model: tf.keras.Model,
                   x: np.ndarray, y: np.ndarray, learning_rate: float = 0.01) -> dict:
    """``x``, ``y``: the global batch, each group's ``config.data.batch_size``
    samples in group order. Returns {"outputs", "loss", "gradients": {name:
    value}, "updated": the Keras weights after one step at ``learning_rate``,
    "optimizer_floats": each rank's optimizer state, "halo_reads",
    "halo_copies_kept", "convolutions", "step_collectives",
    "allreduce_tensors"} (the last two of each rank, in rank order)."""
    from mpi4py import MPI

    trainer = MeshTrainer(benchmark, config, layout, seed=0, initial=named_weights(keras_model))
    local_batch = config.data.batch_size
    group = slice(layout.group * local_batch, (layout.group + 1) * local_batch)
    fetch = {"outputs": trainer.export(trainer.outputs), "loss": trainer.export(trainer.loss),
             "gradients": {v.name: trainer.export(g) for v, g in zip(trainer.variables, trainer.gradients)}}
    values = trainer.session.run(fetch, trainer.feed(x[group], y[group]))
    trainer.set_learning_rate(learning_rate)
    trainer.train_step(x[group], y[group])
    with trainer.graph.as_default():
        state = [v for v in tf.compat.v1.global_variables() if v.name.startswith("optimizer/")]
    optimizer_floats = sum(v.shape.num_elements() for v in state)
    counts = collective_counts(step_collectives(trainer.train_op))
    gathered = MPI.COMM_WORLD.allgather((optimizer_floats, counts))
    return {**values, "updated": trainer.weights(), **halo_reads(trainer.graph),
            "convolutions": convolutions(trainer.graph),
            "optimizer_floats": [floats for floats, _ in gathered],
            **{key: [c[key] for _, c in gathered] for key in counts}}


COLLECTIVE_TYPES = {"HorovodAlltoall", "HorovodAllgather", "HorovodAllreduce", "HorovodGroupedAllreduce"}


def step_collectives(train_op: tf.Operation) -> list[tf.Operation]:
    """The Horovod collectives a training step runs: the ops ``train_op``
    depends on, through data and control edges."""
    seen, stack, found = set(), [train_op], []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack += [t.op for t in op.inputs] + list(op.control_inputs)
        if op.type in COLLECTIVE_TYPES:
            found.append(op)
    return found


def collective_kind(op: tf.Operation) -> str:
    """alltoall, allgather or allreduce; a grouped allreduce counts as one."""
    return op.type.removeprefix("Horovod").lower().removeprefix("grouped")


def collective_counts(ops: list[tf.Operation]) -> dict:
    """{"step_collectives": {kind: count}, "allreduce_tensors": the number of
    tensors each allreduce sums, in name order}."""
    counts: dict[str, int] = {}
    for op in ops:
        counts[collective_kind(op)] = counts.get(collective_kind(op), 0) + 1
    allreduces = sorted((op for op in ops if collective_kind(op) == "allreduce"), key=lambda op: op.name)
    return {"step_collectives": counts, "allreduce_tensors": [len(op.inputs) for op in allreduces]}


FILTER_GRADIENTS = {"Conv2DBackpropFilter", "Conv3DBackpropFilterV2", "DepthwiseConv2dNativeBackpropFilter"}


def halo_reads(graph: tf.Graph) -> dict[str, int]:
    """Kernel gradients that read a halo-extended block (a padded block with
    its halos written in, maybe reshaped): "halo_reads" in all, and
    "halo_copies_kept", those that read the forward pass's block rather than
    the copy ``parallel.mesh.ops`` rebuilds for the backward pass (each
    keeps a second copy of an activation alive for the step)."""
    def assembled(tensor: tf.Tensor) -> bool:
        op = tensor.op
        while op.type in ("Reshape", "IdentityN"):
            op = op.inputs[0].op
        return op.type == "InplaceUpdate"

    def read_in_forward(tensor: tf.Tensor) -> bool:
        return any("gradients" not in c.name.split("/") for c in tensor.consumers())

    reads = [t for op in graph.get_operations() if op.type in FILTER_GRADIENTS for t in op.inputs if assembled(t)]
    return {"halo_reads": len(reads), "halo_copies_kept": sum(1 for t in reads if read_in_forward(t))}


def convolutions(graph: tf.Graph) -> dict[str, list[int]]:
    """The forward 3D convolutions of a graph by padding: for each, the
    thinnest extent of its input along the planes axes
    ({"SAME": [...], "VALID": [...]})."""
    found: dict[str, list[int]] = {"SAME": [], "VALID": []}
    for op in graph.get_operations():
        if op.type == "Conv3D":
            found[op.get_attr("padding").decode()].append(min(op.inputs[0].shape.as_list()[1:4]))
    return found
