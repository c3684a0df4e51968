"""DeepLabV3+ with an Xception-style encoder (output stride 16), as the
MLPerf HPC DeepCAM reference, in Keras.

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
    """Depthwise 3x3 (strided or dilated) -> BN -> pointwise 1x1."""
    x = layers.DepthwiseConv2D(3, stride, "valid", dilation_rate=dilation, use_bias=False,
                               name=f"{name}_dw")(_pad(x, 3, dilation))
    x = batch_norm(x, f"{name}_dw_bn")
    return layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)


def xception_block(x, filters: int, reps: int, stride: int = 1, dilation: int = 1, start_with_relu: bool = True,
                   grow_first: bool = True, name: str = "block"):
    """``reps`` separable convs (ReLU before each, BN after; the last one
    strided) plus a 1x1 projection shortcut when the shape changes."""
    in_channels = x.shape[-1]
    if in_channels != filters or stride != 1:
        skip = batch_norm(layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_skip")(x),
                          f"{name}_skip_bn")
    else:
        skip = x
    h = x
    for i in range(reps):
        if i > 0 or start_with_relu:
            h = layers.ReLU()(h)
        out = filters if (grow_first or i == reps - 1) else in_channels
        h = separable(h, out, stride if i == reps - 1 else 1, dilation, name=f"{name}_sep{i + 1}")
        h = batch_norm(h, f"{name}_sep{i + 1}_bn")
    return layers.Add()([h, skip])


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
    x = xception_block(x, block_channels[0], 2, stride=2, start_with_relu=False, name="entry_block1")
    low_level = x                                                           # /4
    x = xception_block(x, block_channels[1], 2, stride=2, name="entry_block2")
    x = xception_block(x, block_channels[2], 2, stride=2, name="entry_block3")
    # Middle flow.
    for i in range(n_middle_blocks):
        x = xception_block(x, block_channels[2], 3, name=f"middle_block{i + 1}")
    # Exit flow.
    x = xception_block(x, exit_channels[0], 2, grow_first=False, name="exit_block")
    for i, filters in enumerate(exit_channels[1:]):
        x = layers.ReLU()(x)
        x = batch_norm(separable(x, filters, dilation=exit_dilation, name=f"exit_sep{i + 1}"), f"exit_sep{i + 1}_bn")
    x = layers.ReLU()(x)

    # ASPP: 1x1, atrous 3x3 at each rate, and image pooling.
    branches = [layers.ReLU()(batch_norm(conv(x, aspp_channels, 1, name="aspp_1x1"), "aspp_1x1_bn"))]
    for rate in aspp_rates:
        branches.append(layers.ReLU()(batch_norm(conv(x, aspp_channels, 3, dilation=rate, name=f"aspp_rate{rate}"),
                                                 f"aspp_rate{rate}_bn")))
    pooled = layers.GlobalAveragePooling2D(keepdims=True)(x)
    pooled = layers.Conv2D(aspp_channels, 1, name="aspp_pool_conv")(pooled)
    pooled = layers.ReLU()(ChannelAffine(name="aspp_pool_affine")(pooled))
    branches.append(layers.UpSampling2D((height // OUTPUT_STRIDE, width // OUTPUT_STRIDE))(pooled))
    x = layers.Concatenate()(branches)
    x = layers.ReLU()(batch_norm(conv(x, aspp_channels, 1, name="aspp_project"), "aspp_project_bn"))

    # Decoder: back to /4, join the low-level features, refine, up to full size.
    x = TransposedConv2x(decoder_channels, name="decoder_up1")(x)
    x = TransposedConv2x(decoder_channels, name="decoder_up2")(x)
    low_level = layers.ReLU()(batch_norm(conv(layers.ReLU()(low_level), low_level_channels, 1, name="decoder_low"),
                                         "decoder_low_bn"))
    x = layers.Concatenate()([x, low_level])
    x = layers.ReLU()(batch_norm(conv(x, decoder_channels, 3, name="decoder_conv1"), "decoder_bn1"))
    x = layers.ReLU()(batch_norm(conv(x, decoder_channels, 3, name="decoder_conv2"), "decoder_bn2"))
    x = layers.ReLU()(batch_norm(conv(x, decoder_channels, 1, name="decoder_conv3"), "decoder_bn3"))
    x = TransposedConv2x(decoder_channels, name="decoder_up3")(x)
    logits = TransposedConv2x(N_CLASSES, name="logits")(x)
    return tf.keras.Model(inputs, logits, name="deeplabv3plus")


class ChannelAffine(layers.Layer):
    """A learned per-channel scale and shift (the reference's image-pooling
    branch normalises a 1x1 map, where batch statistics are degenerate)."""

    def build(self, input_shape):
        self.scale = self.add_weight("scale", [input_shape[-1]], initializer="ones")
        self.shift = self.add_weight("shift", [input_shape[-1]], initializer="zeros")

    def call(self, x):
        return x * self.scale + self.shift


def forward_flops(model: tf.keras.Model) -> int:
    """Multiply-add FLOPs (2 per MAC) of the convolutions in one sample's
    forward pass; batch norm, activations and additions are left out."""
    macs = 0
    for layer in model.layers:
        if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, TransposedConv2x)):
            continue
        cin, (_, height, width, cout) = layer.input.shape[-1], layer.output.shape
        if isinstance(layer, layers.DepthwiseConv2D):
            macs += layer.kernel_size[0] * layer.kernel_size[1] * height * width * cout
        elif isinstance(layer, layers.Conv2D):
            macs += layer.kernel_size[0] * layer.kernel_size[1] * cin * height * width * cout
        else:
            macs += 9 * cin * (height // 2) * (width // 2) * cout     # every input pixel meets 9 taps
    return 2 * macs
