"""DeepCAM in Mesh TensorFlow, each sample split into height x width blocks.

The same network as ``deepcam.model`` (initialised from it, weight for
weight), on tensors shaped ``[groups, batch, h_blocks, w_blocks, h, w, c]``:
``groups`` (the data-parallel groups) and the block dimensions are laid out
on the mesh, ``batch`` is each group's local batch. Every convolution first
takes halos of ``dilation * (kernel // 2)`` rows and columns from the
neighbouring blocks in one point-to-point exchange (several blocks away when
the halo is wider than a block, as for the ASPP's atrous rates), then runs
unpadded on its block; the transposed convolutions take a one-pixel halo.
Blocks too small to halve (an odd number of rows or columns before a
stride-2 layer) are gathered whole along that dimension, and the decoder
cuts them back into blocks, so any split that divides the field runs.
Batch norm statistics are sums over the blocks of a group, so they equal
the unsplit model's per replica; the ASPP's image pooling averages over all
blocks. Kernels are replicated: their gradients are summed over blocks and
groups (``parallel.mesh.ops.slicewise_with_weights``).

The block operations (``halo_conv2d``, ``depthwise_conv2d``,
``transposed_conv2d_2x``, ``group_batch_norm``) are the generic layers of
``parallel.mesh.layers``; ``DeepCAMMesh`` creates each layer's variables
from the Keras weights and calls them.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow.compat.v1 as tf

from deepcam import model as keras_model
from deepcam.config import DeepCAMConfig, check_shape
from deepcam.objective import N_CLASSES, weighted_cross_entropy
from deepcam.optimizers import AdamFamilyRule
from parallel.mesh.horovod_impl import fed_initializer
from parallel.mesh.layers import depthwise_conv2d, group_batch_norm, halo_conv2d, transposed_conv2d_2x
from parallel.mesh.ops import elementwise, gather_odd_blocks, split_like
from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()

GROUPS, BATCH, H_BLOCKS, W_BLOCKS, H, W, CHANNELS = "groups", "batch", "h_blocks", "w_blocks", "h", "w", "c"
SPLIT_DIMS = {H: H_BLOCKS, W: W_BLOCKS}             # planes dimension -> its blocks dimension


class DeepCAMMesh:
    """The DeepLabV3+ model of ``config`` on a ``split`` = (height blocks, width blocks)."""

    layout_rules = f"{GROUPS}:b;{H_BLOCKS}:s0;{W_BLOCKS}:s1"

    def __init__(self, config: DeepCAMConfig, split: tuple[int, int]):
        self.config = config
        self.split = split
        self.sample_shape = list(config.data.sample_shape)
        check_shape(*self.sample_shape[:2], split)
        self.weights: dict[str, np.ndarray] = {}        # Keras initial values by name, while ``forward`` builds
        self.training = False                            # which pass ``forward`` is building
        self._keras_names: list[str] = []
        self._state_updates: list = []

    # --- shapes -------------------------------------------------------------

    def input_shapes(self, groups: int, local_batch: int) -> tuple[Any, Any]:
        height, width, channels = self.sample_shape
        sh, sw = self.split
        lead = [mtf.Dimension(GROUPS, groups), mtf.Dimension(BATCH, local_batch), mtf.Dimension(H_BLOCKS, sh),
                mtf.Dimension(W_BLOCKS, sw), mtf.Dimension(H, height // sh), mtf.Dimension(W, width // sw)]
        return mtf.Shape(lead + [mtf.Dimension(CHANNELS, channels)]), mtf.Shape(lead)

    def block(self, fields: np.ndarray, labels: np.ndarray, h_block: int, w_block: int) -> tuple[Any, Any]:
        """One process's block of a batch, shaped as its slice of ``input_shapes``."""
        h, w = self.sample_shape[0] // self.split[0], self.sample_shape[1] // self.split[1]
        rows, cols = slice(h_block * h, (h_block + 1) * h), slice(w_block * w, (w_block + 1) * w)
        return (fields[None, :, None, None, rows, cols],
                labels[None, :, None, None, rows, cols].astype(np.float32))

    # --- layers -------------------------------------------------------------

    def _weight(self, mesh: Any, name: str, value: np.ndarray, trainable: bool = True) -> Any:
        """A replicated variable named as the Keras weight; vectors carry the
        channel dimension so that they broadcast over activations."""
        dims = [mtf.Dimension(f"{name.replace('/', '_')}_{i}", size) for i, size in enumerate(value.shape)]
        if value.ndim == 1:
            dims = [mtf.Dimension(CHANNELS, value.shape[0])]
        return mtf.get_variable(mesh, name, dims, initializer=fed_initializer(value), trainable=trainable)

    def conv(self, x: Any, name: str, stride: int = 1, dilation: int = 1) -> Any:
        """The Keras layer's convolution (``halo_conv2d``), with its bias if it has one."""
        kernel = self._weight(x.mesh, f"{name}/kernel", self.weights[f"{name}/kernel"])
        bias = (self._weight(x.mesh, f"{name}/bias", self.weights[f"{name}/bias"])
                if f"{name}/bias" in self.weights else None)
        return halo_conv2d(x, kernel, bias, stride, dilation, name)

    def atrous(self, x: Any, name: str, rate: int) -> Any:
        """The ASPP's atrous 3x3 convolution: on a field over which both its
        off-centre rows and columns only meet padding
        (``deepcam.model.overreaches``), the 1x1 convolution of the kernel's
        centre it reduces to, with no halo to exchange; otherwise the
        dilated convolution with halos of ``rate``."""
        # [groups, batch, h_blocks, w_blocks, h, w, c]; the block axes may be
        # gathered ones (of size 1) under other names.
        sizes = [dim.size for dim in x.shape.dims]
        field = [sizes[2] * sizes[4], sizes[3] * sizes[5]]
        if not all(keras_model.overreaches(rate, size) for size in field):
            return self.conv(x, name, dilation=rate)
        kernel = self._weight(x.mesh, f"{name}/kernel", self.weights[f"{name}/kernel"])
        for dim in kernel.shape.dims[:2]:
            kernel = mtf.slice(kernel, 1, 1, dim.name)
        return halo_conv2d(x, kernel, None, name=name)

    def depthwise(self, x: Any, name: str, stride: int = 1, dilation: int = 1) -> Any:
        kernel = self._weight(x.mesh, f"{name}/depthwise_kernel", self.weights[f"{name}/depthwise_kernel"])
        return depthwise_conv2d(x, kernel, stride, dilation, name)

    def transposed(self, x: Any, name: str) -> Any:
        """The bias-free 2x transposed convolution (``transposed_conv2d_2x``)."""
        kernel = self._weight(x.mesh, f"{name}/kernel", self.weights[f"{name}/kernel"])
        return transposed_conv2d_2x(x, kernel, _transposed_conv, name)

    def batch_norm(self, x: Any, name: str) -> Any:
        """The Keras layer's batch norm over each group (``group_batch_norm``);
        in the training pass its moving statistics' updates join the step's."""
        weights = [self._weight(x.mesh, f"{name}/{w}", self.weights[f"{name}/{w}"], trainable=w in ("gamma", "beta"))
                   for w in ("gamma", "beta", "moving_mean", "moving_variance")]
        y, updates = group_batch_norm(x, *weights, self.training, keras_model.BN_MOMENTUM, keras_model.BN_EPSILON,
                                      name)
        self._state_updates += updates
        return y

    def separable(self, x: Any, name: str, stride: int = 1, dilation: int = 1) -> Any:
        """Depthwise 3x3, then pointwise 1x1 (``deepcam.model.separable``)."""
        return self.conv(self.depthwise(x, f"{name}_dw", stride, dilation), f"{name}_pw")

    def xception_block(self, x: Any, reps: int, stride: int = 1, dilation: int = 1, end_with_relu: bool = True,
                       is_last: bool = False, name: str = "block") -> Any:
        """``deepcam.model.xception_block``, on blocks (its channels come from the weights)."""
        skip = x
        if f"{name}_skip/kernel" in self.weights:
            skip = self.batch_norm(self.conv(x, f"{name}_skip", stride), f"{name}_skip_bn")
        h = x
        for i in range(reps):
            if i > 0:
                h = relu(h)
            h = self.batch_norm(self.separable(h, f"{name}_sep{i + 1}", dilation=dilation), f"{name}_sep{i + 1}_bn")
        if stride != 1 or is_last:
            h = self.separable(h, f"{name}_sep{reps + 1}", stride=stride)
        h = h + skip
        return relu(h) if end_with_relu else h

    # --- network ------------------------------------------------------------

    def forward(self, x: Any, keras_weights: list[tuple[str, np.ndarray]], training: bool) -> Any:
        """Logits shaped like ``x`` with 3 channels, from the Keras model's
        weights (``parallel.mesh.trainer.named_weights``; variables are created on
        the first call and shared by later calls)."""
        self.weights = dict(keras_weights)
        self._keras_names = [name for name, _ in keras_weights]
        self.training = training
        m = self.config.model
        fields = x
        # Before each halving, split dimensions whose blocks have an odd
        # number of rows or columns are gathered whole; the decoder cuts
        # them back into blocks where it meets the low-level features or
        # the labels.
        x = gather_odd_blocks(x, SPLIT_DIMS, "entry_conv1")
        x = relu(self.batch_norm(self.conv(x, "entry_conv1", stride=2), "entry_bn1"))
        x = relu(self.batch_norm(self.conv(x, "entry_conv2"), "entry_bn2"))
        x = gather_odd_blocks(x, SPLIT_DIMS, "entry_block1")
        x = relu(self.xception_block(x, 2, stride=2, end_with_relu=False, name="entry_block1"))
        low_level = x
        x = gather_odd_blocks(x, SPLIT_DIMS, "entry_block2")
        x = self.xception_block(x, 2, stride=2, name="entry_block2")
        x = gather_odd_blocks(x, SPLIT_DIMS, "entry_block3")
        x = self.xception_block(x, 2, stride=2, is_last=True, name="entry_block3")
        for i in range(m.n_middle_blocks):
            x = self.xception_block(x, 3, name=f"middle_block{i + 1}")
        x = self.xception_block(x, 2, end_with_relu=False, is_last=True, name="exit_block")
        for i in range(3):
            x = relu(self.batch_norm(self.separable(x, f"exit_sep{i + 1}", dilation=m.exit_dilation),
                                     f"exit_sep{i + 1}_bn"))

        branches = [relu(self.batch_norm(self.conv(x, "aspp_1x1"), "aspp_1x1_bn"))]
        for rate in m.aspp_rates:
            branches.append(relu(self.batch_norm(self.atrous(x, f"aspp_rate{rate}", rate),
                                                 f"aspp_rate{rate}_bn")))
        branches.append(self._image_pool(x))
        x = mtf.concat(branches, CHANNELS)
        x = relu(self.batch_norm(self.conv(x, "aspp_project"), "aspp_project_bn"))

        for name in ("decoder_up1", "decoder_up2"):
            x = relu(self.batch_norm(self.transposed(x, name), f"{name}_bn"))
        low_level = relu(self.batch_norm(self.conv(low_level, "decoder_low"), "decoder_low_bn"))
        x = mtf.concat([split_like(x, low_level, SPLIT_DIMS, "decoder"), low_level], CHANNELS)
        x = relu(self.batch_norm(self.conv(x, "decoder_conv1"), "decoder_bn1"))
        x = relu(self.batch_norm(self.conv(x, "decoder_conv2"), "decoder_bn2"))
        x = self.conv(x, "decoder_conv3")
        x = relu(self.batch_norm(self.transposed(x, "decoder_up3"), "decoder_up3_bn"))
        logits = split_like(self.transposed(x, "logits"), fields, SPLIT_DIMS, "logits")
        self.weights = {}        # the variables hold them now (full size: 220 MB for the full model)
        return logits

    def _image_pool(self, x: Any) -> Any:
        """Global average over every block, a 1x1 conv, affine, ReLU, broadcast."""
        dims = x.shape.dims
        pooled = mtf.reduce_mean(x, output_shape=mtf.Shape(dims[:2] + [dims[-1]]))
        kernel = self.weights["aspp_pool_conv/kernel"][0, 0]
        out = mtf.Dimension("aspp_pool_out", kernel.shape[1])
        k = mtf.get_variable(x.mesh, "aspp_pool_conv/kernel", [dims[-1], out],
                             initializer=fed_initializer(kernel))
        y = mtf.einsum([pooled, k], output_shape=mtf.Shape(dims[:2] + [out]))
        y = mtf.rename_dimension(y, out.name, CHANNELS)
        y = y * self._weight(x.mesh, "aspp_pool_affine/scale", self.weights["aspp_pool_affine/scale"])
        y = mtf.relu(y + self._weight(x.mesh, "aspp_pool_affine/shift", self.weights["aspp_pool_affine/shift"]))
        return mtf.broadcast(y, mtf.Shape(dims[:-1] + [y.shape.dims[-1]]))

    def state_updates(self) -> list:
        """Batch-norm running statistics, updated with each training step."""
        return self._state_updates

    def keras_weights(self, variables: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Mesh TF variable values (by name) in Keras' ``get_weights`` order."""
        values = []
        for name in self._keras_names:
            value = variables[name]
            values.append(value.reshape(1, 1, *value.shape) if name == "aspp_pool_conv/kernel" else value)
        return values

    # --- objective ----------------------------------------------------------

    def loss(self, labels: Any, logits: Any) -> Any:
        """Weighted cross-entropy averaged over every pixel of the global batch."""
        pixel = mtf.slicewise(lambda y, z: weighted_cross_entropy(tf.cast(y, tf.int32), z), [labels, logits],
                              output_shape=labels.shape, splittable_dims=logits.shape.dims, name="loss")
        return mtf.reduce_mean(pixel)

    def sample_metric_sums(self, labels: Any, logits: Any) -> tuple[Any, int]:
        """Per-sample IoU [groups, batch] (summed by the driver), 1 value each."""
        dims = labels.shape.dims
        counts_dim = mtf.Dimension("iou_counts", 2 * N_CLASSES)

        def counts(y, z):
            truth, guess = tf.cast(y, tf.int32), tf.argmax(z, axis=-1, output_type=tf.int32)
            parts = []
            for c in range(N_CLASSES):
                t, g = tf.equal(truth, c), tf.equal(guess, c)
                parts += [tf.reduce_sum(tf.cast(t & g, tf.float32), axis=[4, 5]),
                          tf.reduce_sum(tf.cast(t | g, tf.float32), axis=[4, 5])]
            return tf.stack(parts, axis=-1)

        local = mtf.slicewise(counts, [labels, logits], output_shape=mtf.Shape(dims[:4] + [counts_dim]),
                              splittable_dims=logits.shape.dims, grad_function=0, name="iou_counts")
        totals = mtf.reduce_sum(local, output_shape=mtf.Shape(dims[:2] + [counts_dim]))

        def iou(t):
            tp, union = t[..., 0::2], t[..., 1::2]
            return tf.reduce_mean(tf.where_v2(union > 0, tp / tf.maximum(union, 1.0), 1.0), axis=-1)

        scores = mtf.slicewise(iou, [totals], output_shape=mtf.Shape(dims[:2]), splittable_dims=dims[:2],
                               grad_function=0, name="iou")
        return scores, 1

    def optimizer(self, learning_rate: tf.Tensor) -> AdamFamilyRule:
        o = self.config.optimizer
        return AdamFamilyRule(o.name, learning_rate, tuple(o.betas), o.eps, o.weight_decay, o.max_grad_norm)


# --- block operations -----------------------------------------------------------
def _transposed_conv(image: tf.Tensor, kernel: tf.Tensor, crop_left: int) -> tf.Tensor:
    return keras_model.transposed_conv_2x(image, kernel, None, crop_left=crop_left)


def relu(x: Any) -> Any:
    return elementwise(tf.nn.relu, x, "relu")
