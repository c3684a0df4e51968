import numpy as np
import pytest
import tensorflow as tf

from core.model_summary import forward_flops, trainable_parameters
from cosmoflow.model import build_model
from core.errors import HarnessError


def test_reference_model_at_full_size():
    model = build_model([128, 128, 128, 4])
    assert model.output_shape == (None, 4)
    assert trainable_parameters(model) == 8_907_556         # the reference's
    assert model.get_layer("conv5").output_shape == (None, 8, 8, 8, 512)
    assert forward_flops(model) == pytest.approx(68.862e9, rel=1e-4)  # the reference's 68.86 GFLOP forward


def test_v07_kernel_two_and_widths_are_configurable():
    model = build_model([64, 64, 64, 4], kernel_size=2, conv_size=8, dropout=0.0)
    assert model.get_layer("conv1").kernel.shape == (2, 2, 2, 4, 8)
    assert model.get_layer("conv5").kernel.shape[-1] == 8 * 16
    assert forward_flops(build_model([128, 128, 128, 4], kernel_size=2)) < 25e9


def test_output_is_bounded_by_scaled_tanh():
    model = build_model([32, 32, 32, 4], conv_size=4)
    out = model(tf.constant(np.random.default_rng(0).normal(0, 50, (2, 32, 32, 32, 4)), tf.float32))
    assert out.shape == (2, 4) and float(tf.reduce_max(tf.abs(out))) <= 1.2 + 1e-6


def test_volume_that_does_not_pool_down_is_refused():
    with pytest.raises(HarnessError, match=r"conv layer 5 sees a 2x2x3 volume"):
        build_model([32, 32, 48, 4])
