"""Halo exchange and re-layout of blocked activations, on one process's block.

A spatially split activation keeps, on each process, one block of every
sample: along each split dimension ``i`` the volume of size ``N_i`` is cut
into ``blocks_i`` blocks of ``n_i = N_i / blocks_i`` planes, laid out on mesh
axis ``mesh_axis_i``. These functions work on that block as a TensorFlow
tensor, inside the lowering of a Mesh TF operation
(``parallel.mesh.ops.block_operation``), which hands them a ``BlockContext``.

The halo exchange is point to point: one Horovod ``alltoall`` per call, in
the process set of the split axes, with a per-destination split that is zero
for every process that is not a neighbour. Each process sends each neighbour
exactly the planes that neighbour needs (corners included, and several blocks
deep when the halo is wider than a block), so the bytes a process moves do
not grow with the number of blocks. Its gradient is the alltoall run
backwards, which returns each halo's gradient to the block it came from.

The extended block (block plus halos) is what a convolution's kernel
gradient reads, but it copies tensors the step keeps anyway: the block
(its producer's gradient keeps it: a ReLU's or a pooling's output) and the
received planes (small). So the backward pass rebuilds it
(``REBUILT_IN_BACKWARD``) instead of keeping a second copy of every
activation from the forward pass (what that saves: docs/performance.md).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow.compat.v1 as tf

from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()

# Graph collection of (tensor, function that builds it again) for tensors the
# gradient should rebuild rather than keep from the forward pass.
REBUILT_IN_BACKWARD = "mlperf_hpc_rebuilt_in_backward"


@dataclass(frozen=True)
class SplitAxis:
    """One split dimension of a blocked tensor, as this process sees it."""
    mesh_axis: int | None     # the mesh axis its blocks are laid out on; None when not split
    blocks: int               # how many blocks the volume has along it
    index: int                # this process's block
    tensor_axis: int          # where its planes are in the block (the slice's axis)
    size: int                 # planes per block


class BlockContext:
    """Where a process's block of one Mesh TF tensor lies in the volume.

    ``block_dims[i]`` and ``size_dims[i]`` name the blocks dimension and the
    planes dimension of split dimension ``i``; a blocks dimension of size 1
    (a gathered or never-split dimension) is an unsplit axis."""

    def __init__(self, mesh_impl: Any, shape: Any, block_dims: list[str], size_dims: list[str]):
        self.mesh_impl = mesh_impl
        layout = mesh_impl.tensor_layout(shape).tensor_axis_to_mesh_axis
        coordinates = mtf.pnum_to_processor_coordinates(mesh_impl.shape, mesh_impl.pnum)
        names = [d.name for d in shape.dims]
        self.axes = []
        for block_name, size_name in zip(block_dims, size_dims):
            blocks_at, planes_at = names.index(block_name), names.index(size_name)
            mesh_axis = layout[blocks_at]
            self.axes.append(SplitAxis(
                mesh_axis=mesh_axis, blocks=shape.dims[blocks_at].size, tensor_axis=planes_at,
                index=0 if mesh_axis is None else coordinates[mesh_axis], size=shape.dims[planes_at].size))
        split = [a.mesh_axis for a in self.axes if a.mesh_axis is not None]
        # The process set's rank order is row-major over its mesh axes, which
        # is the order of ``peers`` only if the split dims use them in order.
        assert split == sorted(split), f"split dimensions laid out out of mesh order: {split}"

    @property
    def split_axes(self) -> list[SplitAxis]:
        return [a for a in self.axes if a.mesh_axis is not None and a.blocks > 1]

    def process_set(self, axes: list[SplitAxis] | None = None) -> Any | None:
        """The Horovod process set of this block's peers along ``axes`` (all
        split axes by default); None when the block has no peers."""
        axes = self.split_axes if axes is None else axes
        if not axes:
            return None
        return self.mesh_impl.process_set(tuple(a.mesh_axis for a in axes))

    def peers(self) -> list[tuple[int, ...]]:
        """Block coordinates (over ``axes``) of every process in the process
        set, in its rank order; an axis with one block has coordinate 0."""
        return list(itertools.product(*[range(a.blocks) if a in self.split_axes else [a.index]
                                        for a in self.axes]))

    @property
    def coordinates(self) -> tuple[int, ...]:
        return tuple(a.index for a in self.axes)


def _overlap(first: tuple[int, int], second: tuple[int, int]) -> tuple[int, int]:
    return max(first[0], second[0]), min(first[1], second[1])


def receive_halos(context: BlockContext, block: tf.Tensor,
                  halo: int) -> list[tuple[tf.Tensor, list[tuple[int, int]]]]:
    """Every part of the neighbours' blocks within ``halo`` planes of this
    block along the context's axes (corners included, and several blocks
    deep when the halo is wider than a block), taken in one alltoall, each
    with its box: its range along each of ``context.axes`` in the extended
    block's coordinates, where this block's own planes are [halo, halo + n)."""
    axes = context.axes
    me = context.coordinates

    def block_range(axis: SplitAxis, coordinate: int) -> tuple[int, int]:
        return coordinate * axis.size, (coordinate + 1) * axis.size

    mine = [block_range(a, a.index) for a in axes]
    extended = [(lo - halo, hi + halo) for lo, hi in mine]

    def piece(t: tf.Tensor, ranges: list[tuple[int, int]], origin: list[int]) -> tf.Tensor:
        begin, size = [0] * t.shape.ndims, t.shape.as_list()
        for axis, (lo, hi), start in zip(axes, ranges, origin):
            begin[axis.tensor_axis], size[axis.tensor_axis] = lo - start, hi - lo
        return tf.slice(t, begin, size)

    def shape_of(ranges: list[tuple[int, int]]) -> list[int]:
        shape = block.shape.as_list()
        for axis, (lo, hi) in zip(axes, ranges):
            shape[axis.tensor_axis] = hi - lo
        return shape

    def nonempty(ranges: list[tuple[int, int]]) -> bool:
        return all(lo < hi for lo, hi in ranges)

    # What each peer needs from this block, and what this block needs from
    # each (None: nothing), in process-set order.
    others = [p for p in context.peers() if p != me]
    sends, takes = [], []
    for peer in others:
        theirs = [block_range(a, c) for a, c in zip(axes, peer)]
        give = [_overlap(m, (lo - halo, hi + halo)) for m, (lo, hi) in zip(mine, theirs)]
        take = [_overlap(e, t) for e, t in zip(extended, theirs)]
        sends.append(piece(block, give, [lo for lo, _ in mine]) if nonempty(give) else None)
        takes.append(take if nonempty(take) else None)
    received = _alltoall_pieces(context, block, sends, takes, shape_of)
    boxes = [[(lo - start, hi - start) for (lo, hi), (start, _) in zip(take, extended)]
             for take in takes if take is not None]
    return list(zip(received, boxes))


def exchange_halos(context: BlockContext, block: tf.Tensor, halo: int,
                   prepare: Callable[[tf.Tensor], tf.Tensor] = tf.identity) -> tf.Tensor:
    """``prepare`` applied to the block extended by ``halo`` planes of its
    neighbours on both sides of each of the context's axes:
    [.., n_0 + 2·halo, .., n_1 + 2·halo, ..] before ``prepare``.

    Planes outside the volume (the global boundary, and both sides of an
    unsplit axis) are zeros, as a SAME convolution pads. One alltoall moves
    every neighbour's planes, corners included.
    ``prepare`` is a reshape into the tensor the layer's op reads: the
    backward pass rebuilds exactly that tensor."""
    if halo == 0:
        return prepare(block)
    received = receive_halos(context, block, halo)
    box_axes = [a.tensor_axis for a in context.axes]

    def build() -> tf.Tensor:
        return prepare(_place_in_padded(block, [p for p, _ in received], [b for _, b in received], box_axes,
                                        halo))

    extended = build()
    tf.add_to_collection(REBUILT_IN_BACKWARD, (extended, build))
    return extended


def convolve_with_halos(context: BlockContext, block: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """The SAME, stride-1 convolution of the whole volume with ``kernel``
    (k planes axes, an odd side, [K, .., K, c, c']) and its ``bias``, on this
    process's block: [lead.., n_1, .., n_k, c] -> [lead.., n_1, .., n_k, c'].
    The block's last k + 1 axes are its planes and channels; the context's
    axes are among the planes axes, and any other planes axis is whole.

    The convolution runs SAME on the block itself, as on a whole sample
    (zeros beyond it), and the halos then add what they contribute: the
    planes received beyond each side of each split axis, convolved (VALID)
    with the kernel's planes that reach across, are added in place to the
    output's first or last planes along that axis. A VALID convolution of
    the halo-extended block runs oneDNN's slower kernels for explicitly
    padded inputs (docs/performance.md), and the extended block was a second
    copy of every activation."""
    planes = kernel.shape.ndims - 2
    first = block.shape.ndims - 1 - planes                 # the block's first planes axis
    lead = block.shape.as_list()[:first]
    halo = kernel.shape[0] // 2
    assert kernel.shape.as_list()[:planes] == [2 * halo + 1] * planes, f"odd cubic kernels only: {kernel.shape}"

    def volumes(t: tf.Tensor) -> tf.Tensor:
        return tf.reshape(t, [-1] + t.shape.as_list()[first:])

    out = tf.nn.bias_add(tf.nn.convolution(volumes(block), kernel, padding="SAME"), bias)
    if context.split_axes:
        # A received piece lies beyond this block along one or more axes;
        # it belongs to the first of them (in the context's order), so that
        # each corner is counted once: along the axes before it the piece
        # spans this block's own planes, along those after it may reach
        # into the corners.
        own = [(halo, halo + a.size) for a in context.axes]
        sides: dict[tuple[int, int], list] = {}
        for piece, box in receive_halos(context, block, halo):
            j = next(i for i, (b, o) in enumerate(zip(box, own)) if b != o)
            sides.setdefault((j, 0 if box[j][1] <= halo else 1), []).append((piece, box))
        for (j, side), pieces in sorted(sides.items()):
            correction = _halo_contribution(context, pieces, j, side, kernel, first, halo, volumes)
            out = _add_to_planes(out, correction, context.axes[j].tensor_axis - first + 1, side)
    return tf.reshape(out, lead + out.shape.as_list()[1:])


def _halo_contribution(context: BlockContext, pieces: list, j: int, side: int, kernel: tf.Tensor, first: int,
                       halo: int, volumes: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """What the received ``pieces`` beyond one side (0: low, 1: high) of
    split axis ``j`` add to the convolution's output planes next to it:
    [B, .., halo (along axis j), .., c'], the other planes axes whole.

    The pieces are laid into a slab zero-padded as a VALID convolution
    needs: along axis j, the halo's planes and halo - 1 zeros on the block's
    side, for the kernel planes that reach across (the first ``halo`` for
    the low side, the last for the high); along the context's other axes,
    the extended range (the corners, or the zeros of SAME padding); halo
    zeros on both sides of the other planes axes."""
    axes = context.axes
    n_j = axes[j].size
    slab_origin = {i: 0 for i in range(len(axes))}
    slab_origin[j] = 0 if side == 0 else n_j + 1                 # n_j + halo - (halo - 1)
    slab_size = {i: a.size + 2 * halo for i, a in enumerate(axes)}
    slab_size[j] = 2 * halo - 1
    at = {a.tensor_axis: i for i, a in enumerate(axes)}
    padded = []
    for piece, box in pieces:
        paddings = []
        for t in range(piece.shape.ndims):
            if t in at:
                i = at[t]
                lo, hi = box[i][0] - slab_origin[i], box[i][1] - slab_origin[i]
                paddings.append([lo, slab_size[i] - hi])
            elif first <= t < piece.shape.ndims - 1:
                paddings.append([halo, halo])
            else:
                paddings.append([0, 0])
        padded.append(tf.pad(piece, paddings))
    slab = volumes(tf.add_n(padded))
    k = axes[j].tensor_axis - first
    reach = [slice(None)] * kernel.shape.ndims
    reach[k] = slice(0, halo) if side == 0 else slice(halo + 1, 2 * halo + 1)
    return tf.nn.convolution(slab, kernel[tuple(reach)], padding="VALID")


def _add_to_planes(out: tf.Tensor, correction: tf.Tensor, axis: int, side: int) -> tf.Tensor:
    """``out`` with ``correction`` added to its first (side 0) or last
    (side 1) planes along ``axis``, in place: out's buffer is the
    convolution's, read by nothing else. A correction with more planes than
    ``out`` (a halo deeper than the block) gives only the ones that land."""
    shape = out.shape.as_list()
    n, m = shape[axis], min(shape[axis], correction.shape[axis])
    begin = [0] * correction.shape.ndims
    if side == 1:
        begin[axis] = correction.shape[axis] - m
    size = correction.shape.as_list()
    size[axis] = m
    values = tf.slice(correction, begin, size)
    planes = range(0, m) if side == 0 else range(n - m, n)
    rows = _row_numbers([range(s) for s in shape[:axis]] + [planes], shape[:axis + 1]).astype(np.int32)
    n_rows = int(np.prod(shape[:axis + 1]))

    @tf.custom_gradient
    def add(whole: tf.Tensor, part: tf.Tensor) -> tf.Tensor:
        summed = tf.raw_ops.InplaceAdd(x=tf.reshape(whole, [n_rows, -1]), i=rows, v=tf.reshape(part, [len(rows), -1]))

        def gradient(grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return grad, tf.reshape(tf.gather(tf.reshape(grad, [n_rows, -1]), rows), part.shape)

        return tf.reshape(summed, shape), gradient

    return add(out, values)


def _row_numbers(ranges: list[range], shape: list[int]) -> np.ndarray:
    """The rows (positions along the leading ``len(shape)`` axes, row-major)
    of a box given by its range along each of them, in row-major order."""
    positions = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, len(shape))
    return np.ravel_multi_index(positions.T, shape)


def _place_in_padded(block: tf.Tensor, pieces: list[tf.Tensor], boxes: list[list[tuple[int, int]]],
                     box_axes: list[int], halo: int) -> tf.Tensor:
    """``block`` zero-padded by ``halo`` on both sides of each of
    ``box_axes``, with each received piece written over the padding at its
    box (its range along each of those axes, in the padded tensor's
    coordinates).

    One full-size copy: the padding, into whose rows the pieces are written
    in place. Concatenating rows of segments (zeros, block, halos) along
    each axis in turn copied the whole block once per axis (DeepCAM 2x1:
    twice per layer, CosmoFlow three times), and the gradient sliced it back
    as often; here the block's gradient is one slice of the padded one.
    (``tensor_scatter_nd_update`` copies its input, so it cost a copy too.)"""
    paddings = [[0, 0] for _ in range(block.shape.ndims)]
    for axis in box_axes:
        paddings[axis] = [halo, halo]
    if not pieces:
        return tf.pad(block, paddings)
    # A row: one position along every axis up to the last split one, with
    # everything after it; each piece is a set of whole rows.
    depth = max(box_axes) + 1
    padded_shape = [n + sum(p) for n, p in zip(block.shape.as_list(), paddings)]
    row_numbers, pieces_as_rows = [], []
    for piece, box in zip(pieces, boxes):
        ranges = [range(lo, hi) for lo, hi in (dict(zip(box_axes, box)).get(a, (0, padded_shape[a]))
                                               for a in range(depth))]
        row_numbers.append(_row_numbers(ranges, padded_shape[:depth]))
        pieces_as_rows.append(tf.reshape(piece, [len(row_numbers[-1]), -1]))
    rows = np.concatenate(row_numbers).astype(np.int32)
    n_rows = int(np.prod(padded_shape[:depth]))

    @tf.custom_gradient
    def place(whole: tf.Tensor, written: tf.Tensor) -> tf.Tensor:
        # InplaceUpdate writes into the padding's output (its only reader;
        # never the block itself, since every padding here is nonzero).
        padded = tf.reshape(tf.pad(whole, paddings), [n_rows, -1])
        extended = tf.reshape(tf.raw_ops.InplaceUpdate(x=padded, i=rows, v=written), padded_shape)

        def gradient(grad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            return (tf.slice(grad, [p[0] for p in paddings], whole.shape.as_list()),
                    tf.gather(tf.reshape(grad, [n_rows, -1]), rows))

        return extended, gradient

    return place(block, tf.concat(pieces_as_rows, 0))


def _alltoall_pieces(context: BlockContext, block: tf.Tensor, sends: list[tf.Tensor | None],
                     receives: list[list[tuple[int, int]] | None], shape_of: Any) -> list[tf.Tensor]:
    """Send ``sends[k]`` to the k-th peer (in process-set order, skipping
    this process) and return the pieces received, of the shapes ``receives``
    names (None: nothing from that peer), in one alltoall."""
    wanted = [shape_of(r) for r in receives if r is not None]
    if not wanted:
        return []
    me = context.peers().index(context.coordinates)
    flat = [tf.reshape(s, [-1]) if s is not None else tf.zeros([0], block.dtype) for s in sends]
    flat.insert(me, tf.zeros([0], block.dtype))
    send_splits = [int(t.shape[0]) for t in flat]
    receive_splits = [int(tf.TensorShape(shape_of(r)).num_elements()) if r is not None else 0 for r in receives]
    receive_splits.insert(me, 0)
    buffer = _alltoall(context, tf.concat(flat, 0), send_splits, receive_splits)
    sizes = [n for n in receive_splits if n]
    return [tf.reshape(part, s) for part, s in zip(tf.split(buffer, sizes), wanted)]


def _alltoall(context: BlockContext, buffer: tf.Tensor, send_splits: list[int],
              receive_splits: list[int]) -> tf.Tensor:
    """A 1-D alltoall with static splits, and its gradient (the alltoall
    backwards) under names of its own. Horovod matches collectives across
    ranks by name, and its own gradient is named after the incoming
    gradient tensor, which differs between boundary and inner blocks."""
    hvd, process_set = context.mesh_impl.hvd, context.process_set()
    name = tf.get_default_graph().unique_name("halo_exchange", mark_as_used=True).replace("/", "_")

    @tf.custom_gradient
    def exchange(send: tf.Tensor) -> tf.Tensor:
        received, _ = hvd.alltoall(send, splits=tf.constant(send_splits, tf.int32), name=name,
                                   process_set=process_set)

        def backwards(grad: tf.Tensor) -> tf.Tensor:
            returned, _ = hvd.alltoall(grad, splits=tf.constant(receive_splits, tf.int32), name=f"{name}_grad",
                                       process_set=process_set)
            return tf.reshape(returned, [sum(send_splits)])

        return tf.reshape(received, [sum(receive_splits)]), backwards

    return exchange(buffer)


def gather_axis(context: BlockContext, block: tf.Tensor, axis: SplitAxis) -> tf.Tensor:
    """The whole volume along ``axis``: every process of the axis gets every
    block (an allgather); [.., n, ..] -> [.., blocks·n, ..]. The result is
    replicated, so each process's gradient of its block is its own part of
    the (identical) gradient of the whole, with no communication."""
    process_set = context.process_set([axis])
    if process_set is None:
        return block
    at = axis.tensor_axis

    @tf.custom_gradient
    def gather(t):
        front = move_axis(t, at, 0)
        name = tf.get_default_graph().unique_name("gather_blocks", mark_as_used=True).replace("/", "_")
        whole = move_axis(context.mesh_impl.hvd.allgather(front, name=name, process_set=process_set), 0, at)
        shape = t.shape.as_list()
        shape[at] *= axis.blocks
        whole = tf.reshape(whole, shape)

        return whole, lambda grad: own_part(context, grad, axis)

    return gather(block)


def own_part(context: BlockContext, whole: tf.Tensor, axis: SplitAxis) -> tf.Tensor:
    """This process's block of a tensor that holds the whole volume along
    ``axis`` (``context`` is the block's): [.., blocks·n, ..] -> [.., n, ..]."""
    begin = [0] * whole.shape.ndims
    begin[axis.tensor_axis] = axis.index * axis.size
    size = whole.shape.as_list()
    size[axis.tensor_axis] = axis.size
    return tf.slice(whole, begin, size)


def move_axis(t: tf.Tensor, source: int, destination: int) -> tf.Tensor:
    """``t`` with its axis ``source`` moved to position ``destination``."""
    if source == destination:
        return t
    order = list(range(t.shape.ndims))
    order.insert(destination, order.pop(source))
    return tf.transpose(t, order)
