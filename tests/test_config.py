from pathlib import Path

import pytest

from cosmoflow.config import CosmoFlowConfig
from core.config import load_config
from core.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_load():
    full = load_config(REPO / "cosmoflow/configs/cosmo.yaml", CosmoFlowConfig)
    assert full.data.sample_shape == [128, 128, 128, 4]
    assert (full.data.n_train, full.data.n_valid) == (524288, 65536)
    assert full.lr_schedule.decay_schedule == {32: 0.25, 64: 0.125}
    mini = load_config(REPO / "cosmoflow/configs/mini.yaml", CosmoFlowConfig)
    assert mini.data.sample_shape[0] < 128


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(HarnessError, match=r"unknown key 'data.batch_sise'"):
        load_config(path, CosmoFlowConfig)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_size: four\n")
    with pytest.raises(HarnessError, match=r"'data.batch_size' must be int"):
        load_config(path, CosmoFlowConfig)


def test_overrides_replace_file_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  batch_size: 4\n")
    config = load_config(path, CosmoFlowConfig, {"data.batch_size": 8, "data.data_dir": "/x", "train.seed": None})
    assert config.data.batch_size == 8 and config.data.data_dir == "/x"


def test_missing_config_file(tmp_path):
    with pytest.raises(HarnessError, match="not found"):
        load_config(tmp_path / "nope.yaml", CosmoFlowConfig)
