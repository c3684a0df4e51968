"""The trainer of a mesh model, and the Keras initial weights it starts from.

Mesh TF builds compat.v1 graphs, so the trainer owns a graph and a session;
the eager input pipeline feeds it, and the driver sees the same trainer
interface as for Keras models.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from core.benchmark import Benchmark
from parallel.mesh.horovod_impl import INITIAL_VALUES, SPLIT_AXES, HorovodMeshImpl, initial_feed, mtf
from parallel.mesh.optimizer_shards import UpdateRule, sharded_step


class MeshModel(Protocol):
    """What a benchmark's Mesh TF model provides (``Benchmark.mesh_model``);
    ``cosmoflow.mesh_model`` and ``deepcam.mesh_model`` implement it."""

    layout_rules: str     # tensor dimension -> mesh axis: the batch/groups on b, blocks on s0 and s1

    def input_shapes(self, groups: int, local_batch: int) -> tuple[Any, Any]:
        """Mesh TF shapes of a global batch of inputs and of its labels."""

    def block(self, x: np.ndarray, y: np.ndarray, block0: int, block1: int) -> tuple[np.ndarray, np.ndarray]:
        """This process's slice of a group's batch, shaped as its slice of ``input_shapes``."""

    def forward(self, x: Any, keras_weights: list[tuple[str, np.ndarray]], training: bool) -> Any:
        """The network's output; creates its variables from the Keras weights on the first call."""

    def loss(self, labels: Any, outputs: Any) -> Any:
        """The scalar training loss over the global batch."""

    def sample_metric_sums(self, labels: Any, outputs: Any) -> tuple[Any, int]:
        """Per-sample metric sums and how many values each sums."""

    def optimizer(self, learning_rate: tf.Tensor) -> UpdateRule:
        """The Keras optimizer's update of one weight, in TensorFlow."""

    def state_updates(self) -> list:
        """Assignments besides the optimizer's each step (batch-norm moving statistics)."""

    def keras_weights(self, variables: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Variable values by name, in Keras ``get_weights`` order and shapes."""


def named_weights(keras_model: tf.keras.Model) -> list[tuple[str, np.ndarray]]:
    """The Keras model's weights as (layer/weight name, value), in
    ``get_weights`` order: what a Mesh TF model initialises itself from."""
    return [(w.name.split(":")[0], value) for w, value in zip(keras_model.weights, keras_model.get_weights())]


def initial_weights(benchmark: Benchmark, config: Any) -> list[tuple[str, np.ndarray]]:
    """What ``named_weights`` of a freshly built Keras model would give, drawn
    by the Keras initialisers one weight at a time, and rank 0's on every
    rank. The model is built in a scratch graph, where its variables take no
    memory; built eagerly, its variables stayed in TensorFlow's allocator
    pool for the whole run (measured in docs/performance.md)."""
    from mpi4py import MPI

    initializers = {}

    def capture(next_creator: Any, **kwargs: Any) -> tf.Variable:
        variable = next_creator(**kwargs)
        initializers[variable.name] = kwargs["initial_value"]     # Keras passes a callable
        return variable

    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")         # graph-mode Keras layers log TF deprecation notices
    try:
        with tf.Graph().as_default(), tf.variable_creator_scope(capture):
            names = [w.name for w in benchmark.build_model(config).weights]
    finally:
        logger.setLevel(level)
    with warnings.catch_warnings():
        # Keras warns when an unseeded initializer is called twice (the
        # scratch graph's call drew nothing); each call still draws anew.
        warnings.filterwarnings("ignore", "The initializer .* is unseeded")
        weights = [(name.split(":")[0], np.array(initializers[name]())) for name in names]
    for _, value in weights:
        MPI.COMM_WORLD.Bcast(value, root=0)
    return weights


def session_config() -> tf.compat.v1.ConfigProto:
    """The trainer's session options: Grappler's dependency optimizer off.
    It turns an op whose outputs feed only control edges into a NoOp, taking
    it to have no side effects, and Horovod's collectives are not marked as
    having any. A rank's gradient sums of the weights other ranks update
    only gate its optimizer step (``parallel.mesh.optimizer_shards``): it dropped
    them, with the halo exchanges they need, and its peers waited forever.
    (Threads still come from the environment, ``core.runtime``.)"""
    from tensorflow.core.protobuf import rewriter_config_pb2

    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.dependency_optimization = rewriter_config_pb2.RewriterConfig.OFF
    return config


class MeshTrainer:
    """The benchmark's Mesh TF model lowered on this rank, with its session."""

    def __init__(self, benchmark: Benchmark, config: Any, layout: Any, seed: int,
                 initial: list[tuple[str, np.ndarray]] | None = None):
        """``initial``: the weights to start from (``named_weights``), the
        same on every rank; by default the Keras model's initialisation
        (``initial_weights``), so both layouts begin from the same
        distribution of weights."""
        self.layout = layout
        self.benchmark, self.config = benchmark, config
        self.model: MeshModel = benchmark.mesh_model(config, layout.split)
        if initial is None:
            initial = initial_weights(benchmark, config)
        self.learning_rate = 0.0
        self.local_batch = config.data.batch_size

        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.set_random_seed(seed)
            mesh_graph = mtf.Graph()
            mesh = mtf.Mesh(mesh_graph, "mesh")
            impl = layout.mesh_impl(self.model.layout_rules)
            x_shape, y_shape = self.model.input_shapes(layout.data_shards, self.local_batch)
            self.x = tf.compat.v1.placeholder(benchmark.input_dtype, impl.slice_shape(x_shape), name="input_block")
            self.y = tf.compat.v1.placeholder(tf.float32, impl.slice_shape(y_shape), name="label_block")
            self.lr = tf.compat.v1.placeholder(tf.float32, [], name="learning_rate")
            # Each process normalises only its own block.
            x = mtf.import_laid_out_tensor(mesh, impl.LaidOutTensor([benchmark.normalise(config, self.x)]), x_shape)
            y = mtf.import_laid_out_tensor(mesh, impl.LaidOutTensor([self.y]), y_shape)

            self.outputs = self.model.forward(x, initial, training=True)
            self.loss = self.model.loss(y, self.outputs)
            errors, values_per_sample = self.model.sample_metric_sums(
                y, self.model.forward(x, initial, training=False))
            self.variables = mesh_graph.trainable_variables
            self.gradients = mtf.gradients([self.loss], [v.outputs[0] for v in self.variables])

            self.lowering = lowering = mtf.Lowering(mesh_graph, {mesh: impl}, autostack=False)
            self.train_op = tf.group([lowering.lowered_operation(op) for op in self.model.state_updates()]
                                     + [self._optimizer_step(impl)])
            # Fully reduced over the mesh: every process holds the global loss.
            self.loss_value = lowering.tensors[self.loss].to_laid_out_tensor().one_slice
            # Each rank holds its group's per-sample errors; eval_sums adds
            # those of the real samples, the layout then adds the groups'.
            self.eval_op = tf.reshape(lowering.tensors[errors].to_laid_out_tensor().one_slice, [-1])
            self.values_per_sample = values_per_sample
            self.full_values = {v.name: lowering.variables[v].full_value for v in mesh_graph.all_variables}
            # Every variable but Mesh TF's full-size masters, which stay
            # uninitialised and empty (see HorovodMeshImpl.LaidOutVariable).
            masters = {v.get_master().name for v in mesh_graph.all_variables}
            initialise = tf.compat.v1.variables_initializer(
                [v for v in tf.compat.v1.global_variables() if v.name not in masters])
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config())
        self.session.run(initialise, initial_feed(self.graph))
        # The initial values were fed once; the graph need not keep them.
        self.graph.clear_collection(INITIAL_VALUES)

    def _optimizer_step(self, impl: HorovodMeshImpl) -> tf.Operation:
        """The model's update rule on this rank's weight slices, its state
        sharded across the sample's processes (``parallel.mesh.optimizer_shards``)."""
        laid_out = [self.lowering.variables[v] for v in self.variables]
        gradients = [self.lowering.tensors[g].to_laid_out_tensor().one_slice for g in self.gradients]
        split = [impl.slice_shape(v.outputs[0].shape) != v.outputs[0].shape.to_integer_list for v in self.variables]
        sample_axes = tuple(range(1, 1 + len(SPLIT_AXES)))
        return sharded_step(self.model.optimizer(self.lr), [v.slice for v in laid_out],
                            [v.laid_out_tensor.one_slice for v in laid_out], gradients, split, self.layout.hvd,
                            impl.process_set(sample_axes))

    def export(self, tensor: Any) -> tf.Tensor:
        """A TF tensor in this trainer's graph with the full value of a mesh
        tensor of its step (``outputs``, ``loss``, one of ``gradients``):
        what tests compare with the unsplit model. Every rank runs it."""
        with self.graph.as_default():
            return self.lowering.export_to_tf_tensor(tensor)

    def feed(self, x: tf.Tensor | np.ndarray, y: tf.Tensor | np.ndarray) -> dict:
        """The session feed for a batch of this group: this rank's block of
        it and the current learning rate."""
        x_block, y_block = self.model.block(np.asarray(x), np.asarray(y), *self.layout.block_coordinates)
        return {self.x: x_block, self.y: y_block, self.lr: self.learning_rate}

    def set_learning_rate(self, value: float) -> None:
        self.learning_rate = value

    def device_input(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        return dataset       # batches are cut into blocks on the host, then fed

    def train_step(self, x: tf.Tensor, y: tf.Tensor) -> float:
        return self.session.run([self.train_op, self.loss_value], self.feed(x, y))[1]

    def eval_sums(self, x: tf.Tensor, y: tf.Tensor) -> np.ndarray:
        # The graph's batch is fixed: a last, partial validation batch is
        # padded with zeros, and the padding's errors are left out.
        x, y = np.asarray(x), np.asarray(y)
        n = len(x)
        if n < self.local_batch:
            x, y = (np.concatenate([t, np.zeros((self.local_batch - n,) + t.shape[1:], t.dtype)]) for t in (x, y))
        errors = self.session.run(self.eval_op, self.feed(x, y))
        return np.array([errors[:n].sum(), n * self.values_per_sample], np.float32)

    def weights(self) -> list[np.ndarray]:
        """The full model's weights in Keras order (a collective: every rank calls it)."""
        return self.model.keras_weights(self.session.run(self.full_values))

    def save_weights(self, path: str | Path) -> None:
        weights = self.weights()
        if self.layout.topology.is_root:
            keras_model = self.benchmark.build_model(self.config)
            keras_model.set_weights(weights)
            keras_model.save_weights(str(path))
