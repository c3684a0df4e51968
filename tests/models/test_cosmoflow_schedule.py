"""CosmoFlow's learning-rate schedule as the driver asks for it, and the
closed-division keys that describe it, at the mini config's batch and at
twice that global batch (2 ranks, or 2 hybrid groups, of the default batch)."""
import math

import pytest

from cosmoflow.benchmark import CosmoFlow
from tests.helpers import REPO

MINI = REPO / "cosmoflow" / "configs" / "mini.yaml"


@pytest.fixture(scope="module")
def mini():
    return CosmoFlow(), CosmoFlow().load_config(MINI)


def test_at_the_base_batch_the_schedule_is_the_configured_one(mini):
    benchmark, config = mini
    s = config.lr_schedule
    keys = benchmark.hyperparameters(config, s.base_batch_size, 1)
    assert keys["opt_base_learning_rate"] == s.base_lr
    assert keys["opt_learning_rate_warmup_epochs"] == s.n_warmup_epochs
    assert keys["opt_learning_rate_decay_boundary_epochs"] == sorted(s.decay_schedule)
    first_decay = min(s.decay_schedule)
    assert benchmark.learning_rate(config, first_decay, 0, s.base_batch_size) == s.base_lr
    assert benchmark.learning_rate(config, first_decay + 1, 0, s.base_batch_size) == \
        pytest.approx(s.base_lr * s.decay_schedule[first_decay])


def test_twice_the_batch_stretches_warmup_and_decays_to_the_same_steps(mini):
    benchmark, config = mini
    s = config.lr_schedule
    batch = 2 * s.base_batch_size
    peak = s.base_lr * math.sqrt(2)              # the mini config's sqrt scaling
    keys = benchmark.hyperparameters(config, batch, 1)
    boundaries = sorted(2 * b for b in s.decay_schedule)
    assert keys["opt_base_learning_rate"] == pytest.approx(peak)
    assert keys["opt_learning_rate_warmup_factor"] == pytest.approx(math.sqrt(2))
    assert keys["opt_learning_rate_warmup_epochs"] == 2 * s.n_warmup_epochs
    assert keys["opt_learning_rate_decay_boundary_epochs"] == boundaries
    assert keys["opt_learning_rate_decay_factor"] == [s.decay_schedule[b // 2] for b in boundaries]
    lr = [benchmark.learning_rate(config, epoch, 0, batch) for epoch in range(boundaries[-1] + 2)]
    assert lr[0] == s.base_lr and lr[2 * s.n_warmup_epochs] == pytest.approx(peak)
    assert lr[boundaries[0]] == pytest.approx(peak)               # a boundary takes effect the epoch after
    assert lr[boundaries[0] + 1] == pytest.approx(peak * s.decay_schedule[boundaries[0] // 2])
    assert lr[-1] == pytest.approx(peak * s.decay_schedule[boundaries[-1] // 2])


def test_the_full_size_config_keeps_the_reference_schedule_at_any_batch():
    benchmark = CosmoFlow()
    config = benchmark.load_config(REPO / "cosmoflow" / "configs" / "cosmo.yaml")
    keys = benchmark.hyperparameters(config, 1024, 1)
    assert keys["opt_learning_rate_decay_boundary_epochs"] == [32, 64]
    assert keys["opt_learning_rate_warmup_epochs"] == 4
    assert keys["opt_base_learning_rate"] == pytest.approx(0.001 * 1024 / 64)
