"""Block layers: the operations the benchmarks' mesh models are built
from, as functions of Mesh TF tensors laid out in blocks (their shapes in
their docstrings). Every process runs each on its own block; weights are
replicated Mesh TF tensors, their gradients summed over the blocks.

- Images [groups, batch, a_blocks, b_blocks, a, b, c] (DeepCAM):
  ``halo_conv2d``, ``depthwise_conv2d``, ``transposed_conv2d_2x`` (halos
  taken point to point, the convolution run unpadded on the block) and
  ``group_batch_norm`` (statistics over a group's batch and every block).
- Volumes [batch, d_blocks, h_blocks, d, h, w, c] (CosmoFlow): ``conv3d``
  (SAME on the block, the halos' part added after) and ``max_pool_2x``.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import tensorflow.compat.v1 as tf

from parallel.mesh.halos import convolve_with_halos, exchange_halos
from parallel.mesh.ops import block_operation, slicewise_with_weights
from parallel.mtf_compat import mesh_tensorflow

mtf = mesh_tensorflow()


def _nhwc(t: tf.Tensor) -> tf.Tensor:
    """A slice [1, B, 1, 1, h, w, c] as the NHWC batch TensorFlow ops take."""
    return tf.reshape(t, t.shape.as_list()[1:2] + t.shape.as_list()[4:])


def _blocked(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [1, t.shape[0], 1, 1] + t.shape.as_list()[1:])


# --- image layers: activations [groups, batch, h_blocks, w_blocks, h, w, c], a
# group's samples cut into blocks laid out on the mesh.


def halo_conv2d(x: Any, kernel: Any, bias: Any | None, stride: int = 1, dilation: int = 1,
                name: str = "conv") -> Any:
    """The convolution of the whole fields zero-padded by
    ``dilation·(K // 2)`` on every side (PyTorch's padding, as
    ``deepcam.model.conv``), each block taking that many rows and columns
    of halo from its neighbours:
    x [groups, batch, h_blocks, w_blocks, h, w, c], kernel [K, K, c, c'],
    bias [c'] or None -> [groups, batch, h_blocks, w_blocks, h/stride, w/stride, c']."""
    def fn(image: tf.Tensor, k: tf.Tensor, *b: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(image, k, stride, "VALID", dilations=dilation)
        return y + b[0] if b else y

    size, out = kernel.shape.dims[0].size, kernel.shape.dims[-1].size
    return _with_halo(fn, x, [kernel] + ([bias] if bias is not None else []), dilation * (size // 2),
                      _out_shape(x, 1 / stride, out), name)


def depthwise_conv2d(x: Any, kernel: Any, stride: int = 1, dilation: int = 1, name: str = "depthwise") -> Any:
    """The depthwise convolution of the whole fields zero-padded by
    ``dilation`` (3x3 kernels), with halos as ``halo_conv2d``:
    x [groups, batch, h_blocks, w_blocks, h, w, c], kernel [3, 3, c, 1]
    -> [groups, batch, h_blocks, w_blocks, h/stride, w/stride, c]."""
    def fn(image: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        return tf.nn.depthwise_conv2d(image, k, [1, stride, stride, 1], "VALID", dilations=[dilation, dilation])

    return _with_halo(fn, x, [kernel], dilation, _out_shape(x, 1 / stride, kernel.shape.dims[2].size), name)


def transposed_conv2d_2x(x: Any, kernel: Any, transposed_conv: Callable, name: str = "transposed") -> Any:
    """A 3x3 stride-2 transposed convolution that doubles each side
    (PyTorch's ConvTranspose2d(3, stride 2, padding 1, output_padding 1)),
    without bias, each block taking a one-pixel halo. ``transposed_conv(
    image, kernel, crop_left)`` is the model's own, on an NHWC image whose
    ``crop_left`` pixels on each side are halo: x [groups, batch, h_blocks,
    w_blocks, h, w, c], kernel [3, 3, c', c] -> [groups, batch, h_blocks,
    w_blocks, 2h, 2w, c']."""
    def fn(image: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
        return transposed_conv(image, k, 1)

    return _with_halo(fn, x, [kernel], 1, _out_shape(x, 2, kernel.shape.dims[2].size), name)


def group_batch_norm(x: Any, gamma: Any, beta: Any, moving_mean: Any, moving_variance: Any, training: bool,
                     momentum: float, epsilon: float, name: str = "batch_norm") -> tuple[Any, list]:
    """Batch norm with statistics over each group's batch and every block
    of its samples (the unsplit model's per replica), or the moving
    statistics outside training; ``momentum`` and ``epsilon`` as the Keras
    layer's: x [groups, batch, h_blocks, w_blocks, h, w, c],
    gamma, beta, moving_mean, moving_variance [c] -> (y shaped as x, the
    moving statistics' assignments: none outside training). The
    normalisation is one slicewise op in TensorFlow's fused kernels
    (``fused_normalise``), so that, as Keras' fused layer, it keeps no
    full-size intermediates for the backward pass."""
    updates = []
    if training:
        mean, variance = group_moments(x, epsilon, name)
        updates = [mtf.assign(moving, moving * momentum + mtf.reduce_mean(batch, output_shape=moving.shape)
                              * (1 - momentum))
                   for moving, batch in ((moving_mean, mean), (moving_variance, variance))]
    else:
        mean, variance = moving_mean, moving_variance

    def normalise(block, m, v, g, b):
        image = fused_normalise(epsilon)(_nhwc(block), tf.reshape(m, [-1]), tf.reshape(v, [-1]), g, b)
        return tf.reshape(image, block.shape)

    y = slicewise_with_weights(normalise, [x, mean, variance, gamma, beta], x.shape, f"{name}_normalise")
    return y, updates


def group_moments(x: Any, epsilon: float, name: str) -> tuple[Any, Any]:
    """Per group and channel, the mean and the (biased) variance over the
    local batch and every pixel of every block:
    x [groups, batch, h_blocks, w_blocks, h, w, c] -> ([groups, c], [groups, c]).

    One sum across the blocks: each block contributes its mean and its
    mean square, the latter as its variance about its own mean plus
    that mean squared, so that only the spread of the block means (not
    of the pixels) is found by a difference of squares. Blocks are of
    equal size, so the group's moments are the means over blocks. Two
    sums in turn (the mean, then the squares about it) made every batch
    norm wait for two collectives in the forward pass and one more in
    the backward."""
    dims = x.shape.dims
    groups, h_blocks, w_blocks, channels = dims[0], dims[2], dims[3], dims[6]
    moments_dim = mtf.Dimension(f"{name}_moments", 2)
    pixels = dims[1].size * dims[4].size * dims[5].size           # per channel in one block

    def block_moments(block: tf.Tensor) -> tf.Tensor:
        """[1, B, 1, 1, h, w, c] -> [1, 1, 1, 2, c]: mean and mean square."""
        @tf.custom_gradient
        def moments(t):
            mean, variance = _block_moments(_nhwc(t), epsilon)
            mean, variance = (tf.reshape(m, [1, 1, 1, -1]) for m in (mean, variance))
            # The gradient of (mean(t), mean(t^2)), which these equal.
            def grad(g):
                # Per-channel factors first: two full-size passes.
                g_mean, g_square = (tf.reshape(g[:, :, :, i], [1, 1, 1, 1, 1, 1, -1]) / pixels for i in (0, 1))
                return t * (2.0 * g_square) + g_mean
            return tf.stack([mean, variance + tf.square(mean)], axis=3), grad
        return moments(block)

    partial = slicewise_with_weights(block_moments, [x], mtf.Shape([groups, h_blocks, w_blocks, moments_dim,
                                                                     channels]), f"{name}_moments")
    totals = mtf.reduce_sum(partial, output_shape=mtf.Shape([groups, moments_dim, channels]))
    totals /= h_blocks.size * w_blocks.size

    def moment(i: int) -> Any:
        return mtf.slicewise(lambda t: t[:, i], [totals], output_shape=mtf.Shape([groups, channels]),
                             splittable_dims=[groups, channels], name=f"{name}_moment{i}")

    mean = moment(0)
    return mean, moment(1) - mtf.square(mean)


def _with_halo(fn: Any, x: Any, weights: list, halo: int, output_shape: Any, name: str) -> Any:
    """``fn(image, *weights)`` on each block of ``x`` extended by ``halo``
    rows and columns of the neighbouring blocks (zeros beyond the field),
    taken in one point-to-point exchange, as an NHWC ``image``, and its NHWC
    result blocked again: one block operation per layer."""
    if halo == 0:
        return slicewise_with_weights(lambda block, *w: _blocked(fn(_nhwc(block), *w)), [x] + weights, output_shape,
                                      name)

    def run(context: Any, block: tf.Tensor, *w: tf.Tensor) -> tf.Tensor:
        return _blocked(fn(exchange_halos(context, block, halo, prepare=_nhwc), *w))

    dims = x.shape.dims
    return block_operation(run, [x] + weights, output_shape, [d.name for d in dims[2:4]], [d.name for d in dims[4:6]],
                           name)


def _out_shape(x: Any, scale: float, channels: int) -> Any:
    """``x``'s shape with its blocks' rows and columns scaled and ``channels`` channels."""
    dims = x.shape.dims
    return mtf.Shape(dims[:4] + [mtf.Dimension(dims[4].name, int(dims[4].size * scale)),
                                 mtf.Dimension(dims[5].name, int(dims[5].size * scale)),
                                 mtf.Dimension(dims[6].name, channels)])


@functools.lru_cache(maxsize=None)
def fused_normalise(epsilon: float) -> Callable:
    """(image - mean) / sqrt(variance + epsilon) * gamma + beta on an NHWC
    ``image`` [B, h, w, c] with [c] statistics given (the group's), in
    TensorFlow's fused batch-norm kernels (inference mode) both ways, as the
    unsplit model's fused layer: built of elementwise ops, each batch norm
    took two full-size passes forward and five backward. The statistics'
    gradients follow from the kernel's scale and offset gradients:
    d/dmean = -gamma·inv·sum(g), d/dvariance = -gamma·inv²/2·sum(g·x̂)."""
    @tf.custom_gradient
    def normalise(image: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, gamma: tf.Tensor,
                  beta: tf.Tensor) -> tf.Tensor:
        y, _, _, reserve_mean, reserve_variance, reserve = tf.raw_ops.FusedBatchNormV3(
            x=image, scale=gamma, offset=beta, mean=mean, variance=variance, epsilon=epsilon, is_training=False)

        def grad(g: tf.Tensor) -> tuple[tf.Tensor, ...]:
            d_image, d_gamma, d_beta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=g, x=image, scale=gamma, reserve_space_1=reserve_mean, reserve_space_2=reserve_variance,
                reserve_space_3=reserve, epsilon=epsilon, is_training=False)
            inv = tf.math.rsqrt(variance + epsilon)
            return d_image, -gamma * inv * d_beta, -0.5 * gamma * tf.square(inv) * d_gamma, d_gamma, d_beta

        return y, grad

    return normalise


def _block_moments(image: tf.Tensor, epsilon: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel mean and biased variance of an NHWC ``image``, from the
    fused batch-norm kernel in one pass (``tf.nn.moments`` took three: two
    reductions over the pixels and a full-size squared difference). The
    kernel returns the unbiased variance."""
    channels, pixels = image.shape[-1], image.shape[:-1].num_elements()
    _, mean, unbiased, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=image, scale=tf.ones([channels]), offset=tf.zeros([channels]), mean=tf.zeros([0]),
        variance=tf.zeros([0]), epsilon=epsilon, is_training=True)
    return mean, unbiased * ((pixels - 1) / pixels)


# --- volume layers: activations [batch, d_blocks, h_blocks, d, h, w, c].


def conv3d(x: Any, kernel: Any, bias: Any, name: str = "conv") -> Any:
    """The SAME 3D convolution of the whole volumes with its bias, each block
    convolved as a whole sample plus its halos' part
    (``parallel.mesh.halos.convolve_with_halos``):
    x [batch, d_blocks, h_blocks, d, h, w, c], kernel [K, K, K, c, c'] (K odd),
    bias [c'] -> [batch, d_blocks, h_blocks, d, h, w, c']."""
    dims = x.shape.dims
    return block_operation(convolve_with_halos, [x, kernel, bias], mtf.Shape(dims[:-1] + [kernel.shape.dims[-1]]),
                           [d.name for d in dims[1:3]], [d.name for d in dims[3:5]], name)


def max_pool_2x(x: Any, name: str) -> Any:
    """2x2x2 max pooling inside each block (even sides):
    x [batch, d_blocks, h_blocks, d, h, w, c] -> [.., d/2, h/2, w/2, c].
    With TensorFlow's gradient, which sends each window's gradient to one
    maximum. (Mesh TF's ``max_pool3d`` sends it to every tied maximum; the
    empty regions of count data tie often, the gradients grow several-fold,
    and training diverged.)"""
    batch_dims, (d, h, w), channels = x.shape.dims[:-4], x.shape.dims[-4:-1], x.shape.dims[-1]
    pooled = mtf.Shape(batch_dims + [mtf.Dimension(dim.name, dim.size // 2) for dim in (d, h, w)] + [channels])

    def pool(block: tf.Tensor) -> tf.Tensor:
        lead = block.shape.as_list()[:-4]
        volumes = tf.reshape(block, [-1] + block.shape.as_list()[-4:])
        out = tf.nn.max_pool3d(volumes, ksize=2, strides=2, padding="VALID")
        return tf.reshape(out, lead + out.shape.as_list()[1:])

    return mtf.slicewise(pool, [x], output_shape=pooled, splittable_dims=batch_dims + [channels], name=name)
