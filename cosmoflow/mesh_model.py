"""CosmoFlow in Mesh TensorFlow, each sample split into depth x height blocks.

The same network as ``cosmoflow.model`` (and initialised from it, so the two
agree weight for weight), written on tensors shaped
``[batch, d_blocks, h_blocks, d, h, w, channels]``: the block dimensions are
laid out on the spatial mesh axes, so each process holds one block of every
activation. Each convolution is one block operation
(``parallel.mesh.halos.convolve_with_halos``): a SAME convolution of the block
with its bias, plus the part of the halos, taken point to point from the
neighbours, added to its boundary planes; then the activation. Max pooling
stays inside a block; when a block has become too thin to pool (an odd
number of planes, e.g. the fifth pooling of a 32^3 volume split in two), its
axis is gathered first and the rest of the network runs replicated along it,
so any split that divides the volume runs the default model. The first
dense layer contracts over the blocks, so its kernel is split like the
activations and the partial products are summed across the spatial group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow.compat.v1 as tf

from cosmoflow.config import check_split
from cosmoflow.model import LEAKY_ALPHA
from core.errors import HarnessError
from parallel.mesh.horovod_impl import fed_initializer
from parallel.mesh.layers import conv3d, max_pool_2x
from parallel.mesh.ops import elementwise, gather_odd_blocks
from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()

# Tensor dimension names laid out on the mesh (see parallel.mesh).
BATCH, D_BLOCKS, H_BLOCKS = "batch", "d_blocks", "h_blocks"
SPLIT_DIMS = {"d": D_BLOCKS, "h": H_BLOCKS}      # planes dimension -> its blocks dimension
# The output layer's dimension is the targets' one, so that predictions and
# targets line up elementwise (distinct names would broadcast to an outer product).
TARGET = "target"
OUTPUT_SCALE = 1.2


@dataclass
class CosmoFlowMesh:
    sample_shape: list[int]           # D, H, W, C
    split: tuple[int, int]            # depth blocks, height blocks
    kernel_size: int = 3
    conv_size: int = 32
    n_conv_layers: int = 5
    fc1_size: int = 128
    fc2_size: int = 64
    dropout: float = 0.5
    momentum: float = 0.9
    target_size: int = 4

    layout_rules = f"{BATCH}:b;{D_BLOCKS}:s0;{H_BLOCKS}:s1"

    def __post_init__(self) -> None:
        if self.kernel_size % 2 == 0:
            raise HarnessError(f"model.kernel_size={self.kernel_size}: spatial layouts need an odd kernel "
                               f"(halos of kernel//2 planes on both sides); use kernel_size 3 or --layout data")
        check_split(list(self.sample_shape[:2]), self.split)

    # --- shapes -------------------------------------------------------------

    def input_shapes(self, groups: int, local_batch: int) -> tuple[Any, Any]:
        """Mesh TF shapes of a global batch of volumes and of its targets."""
        batch = groups * local_batch
        d, h, w, c = self.sample_shape
        sd, sh = self.split
        volume = mtf.Shape([mtf.Dimension(BATCH, batch), mtf.Dimension(D_BLOCKS, sd), mtf.Dimension(H_BLOCKS, sh),
                            mtf.Dimension("d", d // sd), mtf.Dimension("h", h // sh), mtf.Dimension("w", w),
                            mtf.Dimension("c0", c)])
        targets = mtf.Shape([mtf.Dimension(BATCH, batch), mtf.Dimension(TARGET, self.target_size)])
        return volume, targets

    def block(self, volumes: np.ndarray, targets: np.ndarray, d_block: int, h_block: int) -> tuple[Any, Any]:
        """One process's block of a batch [n, D, H, W, C], shaped as the
        slice of ``input_shapes`` that process holds: [n, 1, 1, d, h, W, C];
        the targets whole."""
        d, h = self.sample_shape[0] // self.split[0], self.sample_shape[1] // self.split[1]
        part = volumes[:, d_block * d:(d_block + 1) * d, h_block * h:(h_block + 1) * h]
        return part[:, None, None], targets

    # --- network ------------------------------------------------------------

    def forward(self, x: Any, keras_weights: list[tuple[str, np.ndarray]], training: bool) -> Any:
        """Predictions [batch, target] for volumes shaped as ``input_shapes``;
        variables are created on the first call (from ``keras_weights``, see
        ``parallel.mesh.trainer.named_weights``) and shared by later calls."""
        weights = iter(value for _, value in keras_weights)
        for i in range(self.n_conv_layers):
            x = self._conv(x, next(weights), next(weights), f"conv{i + 1}")
            x = max_pool_2x(gather_odd_blocks(x, SPLIT_DIMS, f"pool{i + 1}"), name=f"pool{i + 1}")

        # Keras flattens (D, H, W, C) in row-major order; the same kernel,
        # cut into blocks, contracts the blocked activations.
        kernel, bias = next(weights), next(weights)
        d_blocks, h_blocks = x.shape.dims[1:3]
        d, h, w, c = (dim.size for dim in x.shape.dims[-4:])
        blocked = kernel.reshape(d_blocks.size, d, h_blocks.size, h, w, c, -1).transpose(0, 2, 1, 3, 4, 5, 6)
        x = self._dense(x, blocked, bias, "fc1", "fc1")
        for name, out in (("fc2", "fc2"), ("output", TARGET)):
            x = leaky_relu(x, f"{name}_activation")
            if training and self.dropout > 0:
                x = mtf.dropout(x, is_training=True, rate=self.dropout)
            x = self._dense(x, next(weights), next(weights), name, out)
        return mtf.tanh(x) * OUTPUT_SCALE

    def _dense(self, x: Any, kernel: np.ndarray, bias: np.ndarray, name: str, out_name: str) -> Any:
        """Contract every dimension of ``x`` but the batch with the kernel."""
        out = mtf.Dimension(out_name, kernel.shape[-1])
        shape = x.shape.dims[1:] + [out]
        w = mtf.get_variable(x.mesh, f"{name}/kernel", shape, initializer=fed_initializer(kernel))
        b = mtf.get_variable(x.mesh, f"{name}/bias", [out], initializer=fed_initializer(bias))
        return mtf.einsum([x, w], output_shape=[x.shape.dims[0], out]) + b

    def _conv(self, x: Any, kernel: np.ndarray, bias: np.ndarray, name: str) -> Any:
        """The Keras layer's convolution (``conv3d``), then leaky ReLU:
        [batch, d_blocks, h_blocks, d, h, w, c] -> [.., c']."""
        channels = mtf.Dimension(f"c{name[4:]}", kernel.shape[-1])
        k = mtf.get_variable(x.mesh, f"{name}/kernel", [mtf.Dimension(f"{name}_k{i}", n) for i, n in
                                                          enumerate(kernel.shape[:-1])] + [channels],
                             initializer=fed_initializer(kernel))
        b = mtf.get_variable(x.mesh, f"{name}/bias", [channels], initializer=fed_initializer(bias))
        # The activation is a separate op: inside, TensorFlow's remapper fuses
        # conv, bias and leaky ReLU and then fails on the gradient's use of
        # the pre-activation, dropping every fusion of the graph.
        return leaky_relu(conv3d(x, k, b, name), f"{name}_activation")

    def state_updates(self) -> list:
        """Assignments besides the optimizer's each training step: none."""
        return []

    def keras_weights(self, variables: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Mesh TF variable values (by name) back in Keras' ``get_weights`` order and shapes."""
        weights = []
        for i in range(self.n_conv_layers):
            weights += [variables[f"conv{i + 1}/kernel"], variables[f"conv{i + 1}/bias"]]
        fc1 = variables["fc1/kernel"]
        weights += [fc1.transpose(0, 2, 1, 3, 4, 5, 6).reshape(-1, fc1.shape[-1]), variables["fc1/bias"]]
        for name in ("fc2", "output"):
            weights += [variables[f"{name}/kernel"], variables[f"{name}/bias"]]
        return weights

    # --- objective ----------------------------------------------------------

    def loss(self, targets: Any, predictions: Any) -> Any:
        """Mean squared error over the global batch (the mean over the
        data-parallel mesh axis is what averages gradients across groups)."""
        return mtf.reduce_mean(mtf.square(predictions - targets))

    def optimizer(self, learning_rate: tf.Tensor) -> "MomentumSGD":
        return MomentumSGD(learning_rate, self.momentum)

    def sample_metric_sums(self, targets: Any, predictions: Any) -> tuple[Any, int]:
        """Per-sample sum of absolute errors [batch], and how many values each sums."""
        return mtf.reduce_sum(mtf.abs(predictions - targets), reduced_dim=targets.shape.dims[-1]), self.target_size


def leaky_relu(x: Any, name: str) -> Any:
    return elementwise(lambda t: tf.nn.leaky_relu(t, LEAKY_ALPHA), x, name)


class MomentumSGD:
    """SGD with momentum exactly as Keras' SGD, as a
    ``parallel.mesh.optimizer_shards.UpdateRule``: the weight moves by the new
    velocity, and the velocity keeps past learning rates, so epoch-boundary
    changes behave alike. (Mesh TF's own MomentumOptimizer moves the weight by
    the velocity read before the update, a step late: training diverged.)"""

    slots = ("velocity",)
    elementwise = True

    def __init__(self, learning_rate: tf.Tensor, momentum: float):
        self.learning_rate = learning_rate
        self.momentum = momentum

    def prepare(self, gradients: list[tf.Tensor]) -> tuple[list[tf.Tensor], list[tf.Operation]]:
        return gradients, []

    def update(self, weight: tf.Tensor, gradient: tf.Tensor,
               slots: list[tf.Variable]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        velocity = gradient * self.learning_rate + slots[0] * self.momentum
        return weight - velocity, [velocity]
