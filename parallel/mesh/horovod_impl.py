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

from parallel.mesh.halos import move_axis
from parallel.topology import data_groups
from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()


BATCH_AXIS, SPLIT_AXES = "b", ("s0", "s1")         # the mesh's axes: groups, then a sample's split
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


def mesh_shape(layout_name: str, split: tuple[int, int], processes: int) -> Any:
    """The mesh for ``processes`` ranks, or a one-line refusal."""
    groups = data_groups(layout_name, split, processes)
    return mtf.convert_to_shape(f"{BATCH_AXIS}:{groups};{SPLIT_AXES[0]}:{split[0]};{SPLIT_AXES[1]}:{split[1]}")



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
        ``parallel.mesh.halos.exchange_halos``."""
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
