"""DeepLabV3+ with an Xception-style encoder (output stride 16), layer for
layer the MLPerf HPC DeepCAM reference (mlcommons/hpc
``deepcam/src/deepCam/architecture/deeplab_xception.py``), in Keras: at full
size 56,454,720 trainable parameters and 655.3 GFLOP of convolutions per
768x1152x16 sample forward.

The reference's pieces, as built below: a separable convolution is a
depthwise 3x3 then a pointwise 1x1 with nothing between them; a block's
separable convolutions are each followed by batch norm, with ReLU between
them (not before the first, not after the last), then one more separable
convolution when the block strides (stride 2) or is the last of its flow,
then the sum with the shortcut (a 1x1 convolution and batch norm when the
shape changes) and, for most blocks, ReLU. The decoder's transposed
convolutions have no bias and, but for the last, batch norm and ReLU after
them; its final 1x1 convolution has a bias. No other convolution does.

Convolutions pad explicitly and symmetrically by ``dilation * (kernel // 2)``
(PyTorch's convention, which the reference uses; a stride-2 convolution then
centres its windows on even pixels), and the decoder's stride-2 transposed
convolutions are PyTorch's ``ConvTranspose2d(k=3, s=2, padding=1,
output_padding=1)``. Both make the network blockwise-exact under a spatial
split, which ``deepcam.mesh_model`` relies on. Batch norm uses PyTorch's
defaults (momentum 0.1, epsilon 1e-5).
"""
from __future__ import annotations

import tensorflow as tf

from core.errors import HarnessError
from deepcam.config import OUTPUT_STRIDE, check_shape
from deepcam.objective import N_CLASSES

BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5          # Keras momentum = 1 - PyTorch's 0.1
layers = tf.keras.layers


class TransposedConv2x(layers.Layer):
    """PyTorch's ConvTranspose2d(kernel 3, stride 2, padding 1, output_padding 1):
    doubles H and W; output pixel o takes input i with o = 2i - 1 + k."""

    def __init__(self, filters: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.use_bias = filters, use_bias

    def build(self, input_shape):
        # conv2d_transpose kernels are [k, k, out, in].
        self.kernel = self.add_weight("kernel", [3, 3, self.filters, input_shape[-1]],
                                      initializer="glorot_uniform")
        self.bias = self.add_weight("bias", [self.filters], initializer="zeros") if self.use_bias else None

    def call(self, x):
        return transposed_conv_2x(x, self.kernel, self.bias)

    def forward_macs(self) -> int:
        """Every input pixel meets the 9 taps of every output channel."""
        _, height, width, channels = self.input.shape
        return 9 * height * width * channels * self.filters


def transposed_conv_2x(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None, crop_left: int = 0) -> tf.Tensor:
    """The 2x transposed convolution on NHWC ``x``. ``crop_left`` input pixels
    on each side of H and W are a halo (the spatial layouts' case): the output
    then covers only the interior's 2n pixels."""
    batch, height, width = tf.shape(x)[0], x.shape[1] - 2 * crop_left, x.shape[2] - 2 * crop_left
    # As the gradient of a stride-2 conv that pads (1 + 2*crop) before and
    # (2*crop) after: output o of the interior sees input (o + 1 - k) / 2.
    pad = [[0, 0], [1 + 2 * crop_left, 2 * crop_left], [1 + 2 * crop_left, 2 * crop_left], [0, 0]]
    y = tf.nn.conv2d_transpose(x, kernel, [batch, 2 * height, 2 * width, kernel.shape[2]], strides=2,
                               padding=pad)
    return y + bias if bias is not None else y


def overreaches(rate: int, size: int) -> bool:
    """Whether a 3x3 kernel at dilation ``rate``, over a map axis of
    ``size`` zero-padded by ``rate``, has off-centre taps that only ever
    meet the padding: pixel i's taps i - rate and i + rate lie inside only
    when rate <= i <= size - 1 - rate, which no i satisfies once rate >= size."""
    return rate >= size


def atrous_conv2d(x: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    """``x`` [B, H, W, C] convolved with the 3x3 ``kernel`` at dilation
    ``rate``, zero-padded by ``rate`` on every side: the kernel's rows
    (columns) that only meet padding dropped, as ``overreaches``, so a
    small map runs the 3x1, 1x3 or 1x1 convolution this reduces to; the
    rest is TensorFlow's direct dilated kernel. (Keras' dilated ``Conv2D``
    lowers to SpaceToBatchND, a convolution and BatchToSpaceND, whose work
    on a small map is mostly padding.)"""
    keep = [slice(1, 2) if overreaches(rate, size) else slice(None) for size in x.shape[1:3]]
    kernel = kernel[keep[0], keep[1]]
    kept = [side == 3 for side in kernel.shape[:2]]
    dilations = [rate if k else 1 for k in kept]
    if any(kept):
        x = tf.pad(x, [[0, 0]] + [[rate, rate] if k else [0, 0] for k in kept] + [[0, 0]])
    if x.dtype != tf.float32:
        # Only oneDNN's (float32) and the GPU's kernels take dilations
        # directly; TensorFlow's own CPU kernels (float64) need the lowering.
        return tf.nn.convolution(x, kernel, padding="VALID", dilations=dilations)
    return tf.nn.conv2d(x, kernel, 1, "VALID", dilations=[1, *dilations, 1])


class AtrousConv2D(layers.Conv2D):
    """The ASPP's bias-free atrous 3x3 convolution (``atrous_conv2d``), with
    the weights of ``conv(x, filters, 3, dilation=rate)``."""

    def __init__(self, filters: int, rate: int, **kwargs):
        # SAME padding at an odd kernel pads by rate on each side, as ours.
        super().__init__(filters, 3, padding="same", dilation_rate=rate, use_bias=False, **kwargs)
        self.rate = rate

    def call(self, x):
        return atrous_conv2d(x, self.kernel, self.rate)


def _pad(x, kernel: int, dilation: int):
    pad = dilation * (kernel // 2)
    return layers.ZeroPadding2D(pad)(x) if pad else x


def conv(x, filters: int, kernel: int = 3, stride: int = 1, dilation: int = 1, use_bias: bool = False,
         name: str | None = None):
    return layers.Conv2D(filters, kernel, stride, "valid", dilation_rate=dilation, use_bias=use_bias,
                         name=name)(_pad(x, kernel, dilation))


def batch_norm(x, name: str | None = None):
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def separable(x, filters: int, stride: int = 1, dilation: int = 1, name: str = "sep"):
    """The reference's SeparableConv2d_same: depthwise 3x3 (strided or
    dilated), then pointwise 1x1."""
    x = layers.DepthwiseConv2D(3, stride, "valid", dilation_rate=dilation, use_bias=False,
                               name=f"{name}_dw")(_pad(x, 3, dilation))
    return layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)


def block_units(in_channels: int, filters: int, reps: int, grow_first: bool) -> list[int]:
    """Output channels of a block's separable convolutions (each followed by
    batch norm): growing to ``filters`` first or last, as the reference."""
    if grow_first:
        return [filters] * reps
    return [in_channels] * (reps - 1) + [filters]


def xception_block(x, filters: int, reps: int, stride: int = 1, dilation: int = 1, end_with_relu: bool = True,
                   grow_first: bool = True, is_last: bool = False, name: str = "block"):
    """The reference's Block (see the module docstring)."""
    in_channels = x.shape[-1]
    if in_channels != filters or stride != 1:
        skip = batch_norm(layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_skip")(x),
                          f"{name}_skip_bn")
    else:
        skip = x
    h = x
    units = block_units(in_channels, filters, reps, grow_first)
    for i, out in enumerate(units):
        if i > 0:
            h = layers.ReLU()(h)
        h = batch_norm(separable(h, out, dilation=dilation, name=f"{name}_sep{i + 1}"), f"{name}_sep{i + 1}_bn")
    if stride != 1 or is_last:
        h = separable(h, filters, stride=stride, name=f"{name}_sep{len(units) + 1}")
    h = layers.Add()([h, skip])
    return layers.ReLU()(h) if end_with_relu else h


def build_model(sample_shape: list[int], entry_channels: list[int], block_channels: list[int],
                n_middle_blocks: int, exit_channels: list[int], exit_dilation: int, aspp_channels: int,
                aspp_rates: list[int], low_level_channels: int, decoder_channels: int) -> tf.keras.Model:
    """Logits [B, H, W, 3] for normalised fields [B, H, W, C]."""
    height, width, _ = sample_shape
    check_shape(height, width)
    if len(entry_channels) != 2 or len(block_channels) != 3 or len(exit_channels) != 4:
        raise HarnessError("model: entry_channels needs 2 sizes, block_channels 3, exit_channels 4")
    inputs = tf.keras.Input(sample_shape, name="fields")

    # Entry flow: /2 stem, then three strided blocks to /16.
    x = layers.ReLU()(batch_norm(conv(inputs, entry_channels[0], stride=2, name="entry_conv1"), "entry_bn1"))
    x = layers.ReLU()(batch_norm(conv(x, entry_channels[1], name="entry_conv2"), "entry_bn2"))
    x = xception_block(x, block_channels[0], 2, stride=2, end_with_relu=False, name="entry_block1")
    x = layers.ReLU()(x)
    low_level = x                                                           # /4
    x = xception_block(x, block_channels[1], 2, stride=2, name="entry_block2")
    x = xception_block(x, block_channels[2], 2, stride=2, is_last=True, name="entry_block3")
    # Middle flow.
    for i in range(n_middle_blocks):
        x = xception_block(x, block_channels[2], 3, name=f"middle_block{i + 1}")
    # Exit flow.
    x = xception_block(x, exit_channels[0], 2, end_with_relu=False, grow_first=False, is_last=True,
                       name="exit_block")
    for i, filters in enumerate(exit_channels[1:]):
        x = layers.ReLU()(batch_norm(separable(x, filters, dilation=exit_dilation, name=f"exit_sep{i + 1}"),
                                     f"exit_sep{i + 1}_bn"))

    # ASPP: 1x1, atrous 3x3 at each rate, and image pooling.
    branches = [layers.ReLU()(batch_norm(conv(x, aspp_channels, 1, name="aspp_1x1"), "aspp_1x1_bn"))]
    for rate in aspp_rates:
        branches.append(layers.ReLU()(batch_norm(AtrousConv2D(aspp_channels, rate, name=f"aspp_rate{rate}")(x),
                                                 f"aspp_rate{rate}_bn")))
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(x)
    pooled = layers.Conv2D(aspp_channels, 1, use_bias=False, name="aspp_pool_conv")(pooled)
    pooled = layers.ReLU()(ChannelAffine(name="aspp_pool_affine")(pooled))
    branches.append(layers.UpSampling2D((height // OUTPUT_STRIDE, width // OUTPUT_STRIDE))(pooled))
    x = layers.Concatenate()(branches)
    x = layers.ReLU()(batch_norm(conv(x, aspp_channels, 1, name="aspp_project"), "aspp_project_bn"))

    # Decoder: back to /4, join the low-level features, refine, up to full size.
    for name in ("decoder_up1", "decoder_up2"):
        x = layers.ReLU()(batch_norm(TransposedConv2x(decoder_channels, use_bias=False, name=name)(x), f"{name}_bn"))
    low_level = layers.ReLU()(batch_norm(conv(low_level, low_level_channels, 1, name="decoder_low"),
                                         "decoder_low_bn"))
    x = layers.Concatenate()([x, low_level])
    x = layers.ReLU()(batch_norm(conv(x, decoder_channels, 3, name="decoder_conv1"), "decoder_bn1"))
    x = layers.ReLU()(batch_norm(conv(x, decoder_channels, 3, name="decoder_conv2"), "decoder_bn2"))
    x = conv(x, decoder_channels, 1, use_bias=True, name="decoder_conv3")
    x = layers.ReLU()(batch_norm(TransposedConv2x(decoder_channels, use_bias=False, name="decoder_up3")(x),
                                 "decoder_up3_bn"))
    logits = TransposedConv2x(N_CLASSES, use_bias=False, name="logits")(x)
    return tf.keras.Model(inputs, logits, name="deeplabv3plus")


class ChannelAffine(layers.Layer):
    """The reference's TrainableAffine: a learned per-channel scale and shift
    (its image-pooling branch has a 1x1 map, where batch norm is degenerate)."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", [input_shape[-1]], initializer="ones")
        self.shift = self.add_weight("shift", [input_shape[-1]], initializer="zeros")

    def call(self, x):
        return x * self.scale + self.shift
