"""Mesh TF operations for block-split tensors: slicewise operations whose
functions take weights (and sum their gradients over the blocks in one
grouped allreduce), operations that see their block's context (halos), and
the gathers and splits of axes whose blocks are too thin to pool.
"""
from __future__ import annotations

from typing import Any, Callable

import tensorflow.compat.v1 as tf

from parallel.mesh.halos import REBUILT_IN_BACKWARD, BlockContext, gather_axis, own_part
from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()


class _SlicewiseWithWeights(mtf.SlicewiseOperation):
    """A slicewise op whose inputs may include weights replicated over mesh
    axes the output is split over (a convolution kernel shared by every
    block and every data-parallel group)."""

    def lower(self, lowering: Any) -> None:
        # The function runs on identities of the input slices, and gradients
        # are taken with respect to those: with the slices themselves,
        # TensorFlow would also follow paths between inputs (batch norm's
        # variance is computed from its mean), which Mesh TF adds again.
        self.local_inputs = [tf.identity(lowering.tensors[x].to_laid_out_tensor().one_slice) for x in self.inputs]
        impl = lowering.mesh_impl(self)
        rebuilt = tf.get_collection_ref(REBUILT_IN_BACKWARD)
        first = len(rebuilt)
        lowering.set_tensor_lowering(self.outputs[0], impl.LaidOutTensor([self.run(impl, self.local_inputs)]))
        # Tensors of this op to rebuild in its gradient, with the ops that
        # use them in the forward pass (the only ones that may keep them).
        self.rebuilt = [(t, build, set(t.consumers())) for t, build in rebuilt[first:]]
        del rebuilt[first:]

    def run(self, mesh_impl: Any, slices: list[tf.Tensor]) -> tf.Tensor:
        return self._tf_fn(*slices)

    def gradient(self, grad_ys: list) -> list:
        return _SummedSliceGradients(self, grad_ys).outputs


class _SummedSliceGradients(mtf.Operation):
    """TensorFlow's gradients of each slice, like Mesh TF's generic gradient,
    except that an input's gradient is summed over the mesh axes its forward
    op's output is split over and the input is not: each slice only sees its
    own part of a replicated weight's gradient."""

    def __init__(self, forward_op: Any, grad_ys: list):
        super().__init__(forward_op.inputs + forward_op.outputs + grad_ys, name="slicewise_grad")
        self._forward_op, self._grad_ys = forward_op, grad_ys
        self._outputs = [mtf.Tensor(self, x.shape, x.dtype, index=i) for i, x in enumerate(forward_op.inputs)]

    def lower(self, lowering: Any) -> None:
        impl = lowering.mesh_impl(self)
        forward = self._forward_op

        def local(tensors):
            return [lowering.tensors[t].to_laid_out_tensor().one_slice for t in tensors]

        def split_axes(tensor):
            return {axis for axis in impl.tensor_layout(tensor).tensor_axis_to_mesh_axis if axis is not None}

        grad_ys = local(self._grad_ys)
        grads = tf.gradients(ys=local(forward.outputs), xs=forward.local_inputs, grad_ys=grad_ys,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
        _rebuild_for_gradient(forward.rebuilt, grad_ys)
        output_axes = set().union(*(split_axes(y) for y in forward.outputs))
        to_sum: dict[tuple[int, ...], list] = {}       # mesh axes -> the (output, gradient) pairs to sum over them
        for out, grad, x in zip(self.outputs, grads, forward.inputs):
            missing = tuple(sorted(output_axes - split_axes(x)))
            if missing:
                to_sum.setdefault(missing, []).append((out, grad))
            else:
                lowering.set_tensor_lowering(out, impl.LaidOutTensor([grad]))
        # One collective per set of axes for all of them (a kernel and its
        # bias; batch norm's statistics, scale and offset): DeepCAM mini 2x1
        # ran 207 allreduces a step, 146 so.
        for mesh_axes, pairs in to_sum.items():
            sums = impl.allreduce_sums([grad for _, grad in pairs], mesh_axes)
            for (out, _), summed in zip(pairs, sums):
                lowering.set_tensor_lowering(out, impl.LaidOutTensor([summed]))


def _rebuild_for_gradient(rebuilt: list, grad_ys: list[tf.Tensor]) -> None:
    """Point the gradient ops that read a forward tensor of ``rebuilt`` at a
    copy built again once ``grad_ys`` exist, so the forward tensor is freed
    after its forward use. The control dependency also keeps Grappler from
    merging the copy with the forward tensor (identical ops, same inputs)."""
    for tensor, build, forward_consumers in rebuilt:
        backward_consumers = [op for op in tensor.consumers() if op not in forward_consumers]
        if not backward_consumers:
            continue
        with tf.control_dependencies(grad_ys):
            copy = build()
        for op in backward_consumers:
            for index, source in enumerate(op.inputs):
                if source is tensor:
                    op._update_input(index, copy)    # TF has no public API to reroute an input


def slicewise_with_weights(fn: Callable, inputs: list, output_shape: Any, name: str) -> Any:
    """``fn`` applied to each process's slices of ``inputs`` (every dimension
    splittable), with gradients that are right for replicated weights."""
    dims = {d.name: d for t in inputs for d in t.shape.dims}
    dims.update({d.name: d for d in mtf.convert_to_shape(output_shape).dims})
    op = _SlicewiseWithWeights(fn, inputs, [mtf.convert_to_shape(output_shape)], [inputs[0].dtype],
                               list(dims.values()), name=name)
    return op.outputs[0]


def elementwise(fn: Callable, x: Any, name: str) -> Any:
    """``fn`` (a TensorFlow activation) on each slice, with TensorFlow's own
    gradient kernel (ReluGrad, LeakyReluGrad). Mesh TF's ``relu`` and
    ``leaky_relu`` build their gradients from comparisons, casts and
    products: several full-size temporaries per activation."""
    return slicewise_with_weights(fn, [x], x.shape, name)


class _BlockOperation(_SlicewiseWithWeights):
    """A slicewise op whose function also gets the ``BlockContext`` of its
    first input (or of its output): where the block lies, and its peers
    (halo exchange)."""

    def __init__(self, fn: Callable, inputs: list, output_shape: Any, block_dims: list[str],
                 size_dims: list[str], name: str, context_of_output: bool = False):
        dims = {d.name: d for t in inputs for d in t.shape.dims}
        dims.update({d.name: d for d in output_shape.dims})
        super().__init__(fn, inputs, [output_shape], [inputs[0].dtype], list(dims.values()), name=name)
        self._block_dims, self._size_dims = block_dims, size_dims
        self._context_shape = output_shape if context_of_output else inputs[0].shape

    def run(self, mesh_impl: Any, slices: list[tf.Tensor]) -> tf.Tensor:
        context = BlockContext(mesh_impl, self._context_shape, self._block_dims, self._size_dims)
        return self._tf_fn(context, *slices)


def block_operation(fn: Callable, inputs: list, output_shape: Any, block_dims: list[str], size_dims: list[str],
                    name: str, context_of_output: bool = False) -> Any:
    """``fn(context, *slices)`` on each process's block of ``inputs[0]``
    (and its slices of the other inputs), where ``context`` is the
    ``parallel.mesh.halos.BlockContext`` of the block along ``block_dims`` /
    ``size_dims`` (of the output's block with ``context_of_output``).
    Collectives inside ``fn`` are differentiated by TensorFlow; weights
    among the inputs get their gradients summed as in
    ``slicewise_with_weights``."""
    return _BlockOperation(fn, inputs, mtf.convert_to_shape(output_shape), block_dims, size_dims, name,
                           context_of_output).outputs[0]


def whole_dim(size_dim: str) -> str:
    """The name a gathered split dimension's blocks dimension takes (size 1,
    on no mesh axis, so the tensor is replicated along it)."""
    return f"{size_dim}_whole"


def gather_odd_blocks(x: Any, split_dims: dict[str, str], name: str) -> Any:
    """``x`` with every split dimension whose blocks have an odd number of
    planes gathered whole, for a layer that halves it (a pooling, a stride-2
    convolution): [.., blocks_i, .., n_i, ..] -> [.., 1, .., blocks_i·n_i, ..].
    ``split_dims`` maps each split dimension's planes dimension to its
    blocks dimension (in ``input_shapes``). The layers after it run
    replicated along that dimension (``split_like`` cuts it back into blocks)."""
    size_dims = list(split_dims)
    for i, size_dim in enumerate(size_dims):
        block_dims = [_current_blocks(x, d, split_dims[d]) for d in size_dims]
        names = x.shape.dimension_names
        blocks_at, planes_at = names.index(block_dims[i]), names.index(size_dim)
        blocks, planes = x.shape.dims[blocks_at], x.shape.dims[planes_at]
        if blocks.size == 1 or planes.size % 2 == 0:
            continue
        out = list(x.shape.dims)
        out[blocks_at] = mtf.Dimension(whole_dim(size_dim), 1)
        out[planes_at] = mtf.Dimension(size_dim, planes.size * blocks.size)
        x = block_operation(lambda context, block, i=i: gather_axis(context, block, context.axes[i]), [x],
                            mtf.Shape(out), block_dims, size_dims, f"{name}_gather_{size_dim}")
    return x


def split_like(x: Any, like: Any, split_dims: dict[str, str], name: str) -> Any:
    """``x`` cut back into the blocks of ``like`` along every split dimension
    that ``gather_odd_blocks`` made whole in ``x`` but ``like`` keeps split:
    each process keeps its own block. The gradient of the whole is each
    process's block gradient, zero elsewhere, summed over the axis (the
    replicated weight rule of ``slicewise_with_weights``)."""
    size_dims = list(split_dims)
    for i, size_dim in enumerate(size_dims):
        target = like.shape.get_dim_by_name(_current_blocks(like, size_dim, split_dims[size_dim]))
        current = _current_blocks(x, size_dim, split_dims[size_dim])
        if current != whole_dim(size_dim) or target.size == 1:
            continue
        names = x.shape.dimension_names
        out = list(x.shape.dims)
        out[names.index(current)] = target
        planes_at = names.index(size_dim)
        out[planes_at] = mtf.Dimension(size_dim, out[planes_at].size // target.size)
        block_dims = [_current_blocks(x, d, split_dims[d]) for d in size_dims]
        block_dims[i] = target.name
        x = block_operation(lambda context, whole, i=i: own_part(context, whole, context.axes[i]), [x],
                            mtf.Shape(out), block_dims, size_dims, f"{name}_split_{size_dim}",
                            context_of_output=True)
    return x


def _current_blocks(x: Any, size_dim: str, blocks_dim: str) -> str:
    """The blocks dimension of split dimension ``size_dim`` in ``x``: its own, or the whole one."""
    return whole_dim(size_dim) if whole_dim(size_dim) in x.shape.dimension_names else blocks_dim
