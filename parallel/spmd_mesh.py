"""A Mesh TensorFlow mesh spread over MPI processes, one slice per process.

Mesh TF ships two mesh implementations: ``PlacementMeshImpl`` (one client
graph holding every processor's slice, placed on devices) and
``SimdMeshImpl`` (SPMD, but its collectives are TPU ops). ``HorovodMeshImpl``
is the SPMD design for CPU and GPU clusters: every MPI rank builds the same
Mesh TF graph and lowers only its own slice (its processor number is its
rank), and the collectives the lowering asks for run as Horovod operations
inside the process set of the ranks that differ only along the mesh axes
involved. Nothing is centralised, so it scales like any Horovod job; the
process sets are known before ``hvd.init`` from the mesh shape alone.

Mesh coordinates are row-major in rank, so the last mesh axes (the spatial
split) vary fastest and one sample's processes are consecutive ranks, which
the launchers place on neighbouring nodes.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable

import tensorflow.compat.v1 as tf

from parallel.blocks import REBUILT_IN_BACKWARD, BlockContext, gather_axis, move_axis, own_part
from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()


INITIAL_VALUES = "mlperf_hpc_initial_values"       # graph collection of (placeholder, value)


def fed_initializer(value: Any) -> Callable:
    """A variable initializer that takes ``value`` through a placeholder fed
    when the variables are initialised (see ``initial_feed``). As a graph
    constant, a large model's weights (DeepCAM's 55 M) would be copied by
    every graph pass and the session: gigabytes per process."""
    def initializer(shape, dtype=tf.float32, partition_info=None):
        placeholder = tf.placeholder(dtype, value.shape)
        tf.add_to_collection(INITIAL_VALUES, (placeholder, value))
        return tf.reshape(placeholder, shape)
    return initializer


def initial_feed(graph: tf.Graph) -> dict:
    """The feed for ``global_variables_initializer`` of a graph whose
    variables use ``fed_initializer``."""
    return dict(graph.get_collection(INITIAL_VALUES))


def rank_groups(mesh_shape: Any, mesh_axes: list[int]) -> list[list[int]]:
    """The groups of ranks that differ only along ``mesh_axes``."""
    return [sorted(group) for group in mtf.processor_groups(mesh_shape, mesh_axes)]


def required_process_sets(mesh_shape: Any) -> list[list[int]]:
    """Every rank group a collective over some subset of mesh axes can use:
    each must be registered with Horovod, identically on all ranks, at init."""
    n_axes = mesh_shape.ndims
    world = mesh_shape.size
    seen: set[tuple[int, ...]] = set()
    groups = []
    for mask in range(1, 2 ** n_axes):
        axes = [axis for axis in range(n_axes) if mask >> axis & 1]
        for group in rank_groups(mesh_shape, axes):
            if 1 < len(group) < world and tuple(group) not in seen:
                seen.add(tuple(group))
                groups.append(group)
    return groups


class HorovodMeshImpl(mtf.MeshImpl):
    """SPMD mesh implementation whose collectives are Horovod operations."""

    def __init__(self, shape: Any, layout: Any, hvd: Any, process_sets: dict[tuple[int, ...], Any]):
        super().__init__(shape, layout)
        self.hvd = hvd
        self.pnum = hvd.rank()
        self._process_sets = process_sets
        self._random_calls = 0
        self._zero_variable = None
        self._group_sets: dict[tuple[int, ...], Any] = {}

    class LaidOutTensor:
        """This process's slice (a one-element list, as Mesh TF expects)."""

        def __init__(self, tensor_list: list):
            assert len(tensor_list) == 1, "one slice per process"
            self.tensor_list = tensor_list

        @classmethod
        def from_tensor_list(cls, tensor_list: list) -> "HorovodMeshImpl.LaidOutTensor":
            return cls(tensor_list)

        @property
        def one_slice(self) -> tf.Tensor:
            return self.tensor_list[0]

        @property
        def all_slices(self) -> list:
            return self.tensor_list

        @property
        def slice_shape(self) -> list[int]:
            return self.one_slice.shape.as_list()

        def to_laid_out_tensor(self) -> "HorovodMeshImpl.LaidOutTensor":
            return self

    class LaidOutVariable:
        """The slice variable of a Mesh TF variable, initialised with its
        own slice of the variable's initial value, and the full value
        gathered from the slices (to export weights).

        Mesh TF also creates a full-size master variable for every variable.
        It is never initialised, so it holds no memory: with masters, weights
        and optimizer slots took twice their size on every process (DeepCAM:
        55 M weights, Adam's two slots, 660 MB more per process)."""

        def __init__(self, variable: Any, mesh_impl: "HorovodMeshImpl"):
            self._variable = variable
            shape = variable.outputs[0].shape
            start = variable.get_master().initial_value        # the initializer's tensor, full size

            def own_start(*_: Any, **__: Any) -> tf.Tensor:
                return tf.cast(mesh_impl.own_slice(start, shape), variable.slice_dtype)

            self.slice = tf.get_variable(f"{variable.name}_slice", mesh_impl.slice_shape(shape),
                                         dtype=variable.slice_dtype, initializer=own_start)
            # One read per step, shared by every use: left as the variable
            # itself, each use would read it separately, and a read after
            # this step's update (e.g. a backward pass reading a kernel that
            # was already updated) makes replicas drift apart.
            self.laid_out_tensor = mesh_impl.LaidOutTensor([self.slice.read_value()])
            self.full_value = mesh_impl.export_to_tf_tensor(variable.outputs[0], self.laid_out_tensor)

        def assign_to_slices(self, assign_fn: Callable, values: list) -> tf.Operation:
            return tf.group(assign_fn(self._variable, self.slice, values[0]))

    # --- local work -------------------------------------------------------

    def own_slice(self, tf_tensor: tf.Tensor, tensor_shape: Any) -> tf.Tensor:
        """This process's slice of a full-size tensor."""
        if tensor_shape.ndims == 0:
            return tf_tensor
        begin = self.slice_begin(tensor_shape, self.pnum)
        return tf.slice(tf_tensor, begin, self.slice_shape(tensor_shape))

    def slicewise(self, fn: Callable, *inputs: Any) -> Any:
        inputs = mtf.convert_args_to_laid_out_tensors(inputs)
        result = fn(*[x.one_slice if isinstance(x, self.LaidOutTensor) else x for x in inputs])
        if isinstance(result, tuple):
            return tuple(self.LaidOutTensor([t]) for t in result)
        return self.LaidOutTensor([result])

    def laid_out_pnum(self) -> "HorovodMeshImpl.LaidOutTensor":
        return self.LaidOutTensor([tf.constant(self.pnum)])

    def random(self, shape: Any, tf_fn: Callable, kwargs: dict) -> "HorovodMeshImpl.LaidOutTensor":
        # Replicated slices must draw the same numbers on every process and
        # different slices different ones: seed by call order (the same on
        # all ranks, which build the same graph) and by the slice's position.
        self._random_calls += 1
        begin = self.slice_begin(shape, self.pnum)
        seed = zlib.crc32(f"{self._random_calls}:{begin}".encode()) % 2 ** 31
        return self.LaidOutTensor([tf_fn(self.slice_shape(shape), seed=seed, **kwargs)])

    def Print(self, x: Any, data: Any, message: str, **kwargs: Any) -> Any:  # noqa: N802 (Mesh TF's name)
        return x

    def import_tf_tensor(self, x: Any, tf_x: tf.Tensor) -> "HorovodMeshImpl.LaidOutTensor":
        return self.LaidOutTensor([self.own_slice(tf_x, x.shape)])

    def export_to_tf_tensor(self, x: Any, laid_out_x: Any) -> tf.Tensor:
        """The full tensor on every process: gather along each split axis."""
        t = laid_out_x.to_laid_out_tensor()
        for tensor_axis, mesh_axis in enumerate(self.tensor_layout(x.shape)):
            if mesh_axis is not None:
                t = self.allconcat(t, mesh_axis, tensor_axis)
        return t.one_slice

    # --- collectives ------------------------------------------------------

    def process_set(self, mesh_axes: tuple[int, ...]) -> Any | None:
        """The Horovod process set of this rank's group along ``mesh_axes``;
        None when the group is this rank alone. Cached: the lowering asks
        once per collective, and finding the group walks the whole job."""
        if mesh_axes not in self._group_sets:
            self._group_sets[mesh_axes] = self._find_process_set(mesh_axes)
        return self._group_sets[mesh_axes]

    def _find_process_set(self, mesh_axes: tuple[int, ...]) -> Any | None:
        for group in rank_groups(self.shape, list(mesh_axes)):
            if self.pnum in group:
                if len(group) == 1:
                    return None
                if len(group) == self.size:
                    return self.hvd.global_process_set
                return self._process_sets[tuple(group)]
        raise AssertionError(f"rank {self.pnum} is in no group of mesh axes {mesh_axes}")

    def allreduce(self, x: Any, mesh_axes: list[int], reduction_fn_string: str) -> Any:
        x = x.to_laid_out_tensor()
        process_set = self.process_set(tuple(mesh_axes))
        if process_set is None:
            return x
        op = {"SUM": self.hvd.Sum, "MAX": self.hvd.Max, "MIN": self.hvd.Min}[reduction_fn_string]
        return self.LaidOutTensor([self.hvd.allreduce(x.one_slice, op=op, process_set=process_set)])

    def allreduce_sums(self, slices: list[tf.Tensor], mesh_axes: tuple[int, ...]) -> list[tf.Tensor]:
        """Each slice summed over ``mesh_axes``, in one grouped collective:
        one negotiation, where separate allreduces of tensors that become
        ready together may each wait for a cycle of their own."""
        process_set = self.process_set(mesh_axes)
        if process_set is None:
            return slices
        return self.hvd.grouped_allreduce(slices, op=self.hvd.Sum, process_set=process_set)

    def allconcat(self, x: Any, mesh_axis: int, concat_axis: int) -> Any:
        x = x.to_laid_out_tensor()
        process_set = self.process_set((mesh_axis,))
        if process_set is None:
            return x
        # Horovod gathers along the first axis, in rank order, which is the
        # order of the mesh coordinate along ``mesh_axis``.
        front = move_axis(x.one_slice, concat_axis, 0)
        gathered = self.hvd.allgather(front, process_set=process_set)
        return self.LaidOutTensor([move_axis(gathered, 0, concat_axis)])

    def alltoall(self, x: Any, mesh_axis: int, split_axis: int, concat_axis: int) -> Any:
        x = x.to_laid_out_tensor()
        process_set = self.process_set((mesh_axis,))
        if process_set is None:
            return x
        group_size = self.shape[mesh_axis].size
        front = move_axis(x.one_slice, split_axis, 0)
        received = self.hvd.alltoall(front, process_set=process_set)
        if isinstance(received, tuple):          # (tensor, received splits)
            received = received[0]
        pieces = tf.split(received, group_size, axis=0)      # one per source, in rank order
        pieces = [move_axis(piece, 0, split_axis) for piece in pieces]
        return self.LaidOutTensor([tf.concat(pieces, axis=concat_axis)])

    def receive(self, x: Any, mesh_axis: int, source_pcoord: list[int | None]) -> Any:
        """Each process takes the slice of the group member named by
        ``source_pcoord`` (zeros for None): Mesh TF's shifts. The models'
        halos do not come this way but point to point, through
        ``parallel.blocks.exchange_halos``."""
        x = x.to_laid_out_tensor()
        process_set = self.process_set((mesh_axis,))
        my_coord = mtf.pnum_to_processor_coordinates(self.shape, self.pnum)[mesh_axis]
        source = source_pcoord[my_coord]
        if process_set is None:
            return self.LaidOutTensor([x.one_slice if source == my_coord else tf.zeros_like(x.one_slice)])
        gathered = self.hvd.allgather(tf.expand_dims(x.one_slice, 0), process_set=process_set)
        if source is not None:
            return self.LaidOutTensor([gathered[source]])
        # A process that receives nothing must still run the gather, or its
        # peers wait for it forever. Its zeros must therefore depend on the
        # gathered data in a way no graph optimiser can fold away: control
        # dependencies and zeros_like were both removed by TF graph
        # optimisations (a 2-rank halo exchange deadlocked), a variable read is not.
        return self.LaidOutTensor([gathered[my_coord] * self._zero()])

    def _zero(self) -> tf.Variable:
        if self._zero_variable is None:
            self._zero_variable = tf.Variable(0.0, trainable=False, name="receive_zero")
        return self._zero_variable


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
    ``parallel.blocks.BlockContext`` of the block along ``block_dims`` /
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
