"""Run under ``mpirun -np 4``: every collective of ``HorovodMeshImpl``, the
blocks' halo exchange and the convolution with halos, on a 2x2 mesh against
their definitions computed from all ranks' slices (numpy, and TensorFlow's
convolution of the whole field).
Each rank checks its own results; rank 0 writes the names checked (JSON).

Usage: mpi_mesh_collectives.py OUT.json
"""
import json
import sys

from core.runtime import configure_environment

configure_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mpi4py import MPI  # noqa: E402

from parallel.mesh.halos import BlockContext, convolve_with_halos, exchange_halos  # noqa: E402
from parallel.layouts import DataParallel  # noqa: E402
from parallel.mesh.horovod_impl import HorovodMeshImpl, mtf, required_process_sets  # noqa: E402

SHAPE = mtf.convert_to_shape("a:2;b:2")
layout = DataParallel(process_sets=required_process_sets(SHAPE))
rank = layout.topology.rank
assert layout.topology.size == 4, "run with 4 ranks"
# rank = 2 * a + b (row-major mesh coordinates)
coords = {r: (r // 2, r % 2) for r in range(4)}
slices = {r: np.arange(8, dtype=np.float32).reshape(2, 4) + 10 * r for r in range(4)}
FIELD = np.arange(1, 25, dtype=np.float32).reshape(4, 6)
rng = np.random.default_rng(0)           # the same draws on every rank
CHANNELS, WEIGHTS = rng.normal(size=(4, 6, 2)).astype(np.float32), rng.normal(size=(4, 6, 3)).astype(np.float32)
KERNELS = {halo: rng.normal(size=(2 * halo + 1, 2 * halo + 1, 2, 3)).astype(np.float32) for halo in (1, 3)}
BIAS = rng.normal(size=3).astype(np.float32)


def halo_window(halo):
    """This rank's block with ``halo`` cells around it, zeros outside the field."""
    padded = np.pad(FIELD, halo)
    i, j = coords[rank]
    return padded[2 * i:2 * i + 2 + 2 * halo, 3 * j:3 * j + 3 + 2 * halo]


def peers(axis):
    """Ranks that differ from this one only along mesh ``axis``, in coordinate order."""
    return [r for r in range(4) if all(coords[r][k] == coords[rank][k] for k in range(2) if k != axis)]


def fed(value):
    """A placeholder fed with ``value``: on constants, Grappler's constant
    folding runs the Horovod ops while optimising the graph, each rank in
    its own order, and the ranks deadlock."""
    placeholder = tf.compat.v1.placeholder(tf.float32, value.shape)
    feed[placeholder] = value
    return placeholder


feed = {}
graph = tf.Graph()
with graph.as_default():
    impl = HorovodMeshImpl(SHAPE, mtf.convert_to_layout_rules(""), layout.hvd, layout.process_sets)
    mine = impl.LaidOutTensor([fed(slices[rank])])
    ops = {
        "allreduce_a": impl.allreduce(mine, [0], "SUM"),
        "allreduce_ab": impl.allreduce(mine, [0, 1], "SUM"),
        "allreduce_max_b": impl.allreduce(mine, [1], "MAX"),
        "allconcat_b_axis1": impl.allconcat(mine, 1, 1),
        "alltoall_a_split0_concat1": impl.alltoall(mine, 0, 0, 1),
        "receive_b_from_next": impl.receive(mine, 1, [1, None]),
    }
    fetch = {name: op.one_slice for name, op in ops.items()}
    # A 4x6 field in 2x2 blocks of 2x3: halos of 1, and of 3 (deeper than a
    # block: planes come from two blocks away, corners included).
    blocked = HorovodMeshImpl(SHAPE, mtf.convert_to_layout_rules("rows:a;cols:b"), layout.hvd, layout.process_sets)
    field_shape = mtf.convert_to_shape("rows:2;cols:2;x:2;y:3")
    context = BlockContext(blocked, field_shape, ["rows", "cols"], ["x", "y"])
    block = fed(FIELD[None, None, 2 * coords[rank][0]:2 * coords[rank][0] + 2,
                3 * coords[rank][1]:3 * coords[rank][1] + 3])
    for halo in (1, 3):
        fetch[f"halo_{halo}"] = exchange_halos(context, block, halo)[0, 0]
    # The same field with 2 channels convolved into 3 (kernels 3x3 and 7x7),
    # and its gradients for a loss that weighs each output by WEIGHTS.
    channels = mtf.convert_to_shape("rows:2;cols:2;x:2;y:3;c:2")
    context = BlockContext(blocked, channels, ["rows", "cols"], ["x", "y"])
    rows, cols = slice(2 * coords[rank][0], 2 * coords[rank][0] + 2), slice(3 * coords[rank][1], 3 * coords[rank][1] + 3)
    whole = tf.constant(CHANNELS[None])
    block = fed(CHANNELS[None, None, rows, cols])
    for halo in (1, 3):
        kernel = tf.constant(KERNELS[halo])
        out = convolve_with_halos(context, block, kernel, tf.constant(BIAS))
        expected_out = tf.nn.convolution(whole, kernel, padding="SAME") + BIAS
        weights = tf.constant(WEIGHTS[None, None, rows, cols])
        fetch[f"convolve_{halo}"] = (out, tf.gradients(out * weights, [block, kernel]))
        expected_gradients = tf.gradients(expected_out * WEIGHTS[None], [whole, kernel])
        fetch[f"convolve_{halo}_expected"] = (expected_out[:, rows, cols][None], expected_gradients)
with tf.compat.v1.Session(graph=graph) as session:
    session.run(tf.compat.v1.variables_initializer(graph.get_collection("variables")))
    got = session.run(fetch, feed)

a_group, b_group = peers(0), peers(1)
expected = {
    "allreduce_a": sum(slices[r] for r in a_group),
    "allreduce_ab": sum(slices.values()),
    "allreduce_max_b": np.maximum(*(slices[r] for r in b_group)),
    "allconcat_b_axis1": np.concatenate([slices[r] for r in b_group], axis=1),
    # member j of the group receives row-block j of every member, side by side
    "alltoall_a_split0_concat1": np.concatenate(
        [np.split(slices[r], 2, axis=0)[coords[rank][0]] for r in a_group], axis=1),
    "receive_b_from_next": slices[b_group[1]] if coords[rank][1] == 0 else np.zeros((2, 4), np.float32),
    "halo_1": halo_window(1),
    "halo_3": halo_window(3),
}
for halo in (1, 3):
    # Each rank's block of the whole field's output and input gradient; the
    # kernel gradient summed over the ranks is the whole field's.
    (out, (block_gradient, kernel_gradient)), (want, (field_gradient, want_kernel)) = (
        got[f"convolve_{halo}"], got[f"convolve_{halo}_expected"])
    kernel_gradient = MPI.COMM_WORLD.allreduce(kernel_gradient)
    i, j = coords[rank]
    assert np.allclose(out, want, atol=1e-5), f"rank {rank} convolve_{halo}: {out} != {want}"
    assert np.allclose(block_gradient, field_gradient[:, None, 2 * i:2 * i + 2, 3 * j:3 * j + 3], atol=1e-5), \
        f"rank {rank} convolve_{halo}: block gradient"
    assert np.allclose(kernel_gradient, want_kernel, atol=1e-4), f"rank {rank} convolve_{halo}: kernel gradient"
    expected[f"convolve_{halo}"] = None
for name, value in expected.items():
    if value is None:
        continue
    assert got[name].shape == value.shape and np.array_equal(got[name], value), \
        f"rank {rank} {name}: got {got[name].tolist()}, expected {value.tolist()}"
layout.barrier()
if rank == 0:
    with open(sys.argv[1], "w") as f:
        json.dump(sorted(expected), f)
