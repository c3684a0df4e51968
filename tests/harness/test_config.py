from pathlib import Path

import pytest

from cosmoflow.config import CosmoFlowConfig
from core.config import load_config
from core.errors import HarnessError

REPO = Path(__file__).resolve().parents[2]


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


def _numeric_fields(schema, prefix=""):
    """(dotted key, schema, field name) of every number, list of numbers and
    mapping to numbers in a config schema."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _numeric_fields(hint, f"{prefix}{f.name}.")
            continue
        leaves = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        leaves = [arg for leaf in leaves for arg in (typing.get_args(leaf) or [leaf])]
        if any(leaf in (int, float) for leaf in leaves):
            yield f"{prefix}{f.name}", schema, f.name


@pytest.mark.parametrize("name", ["cosmoflow", "deepcam"])
def test_every_numeric_config_value_declares_its_valid_range(name):
    from core.benchmark import get_facts
    from core.config import _declared_range

    keys = [(key, _declared_range(schema, field)) for key, schema, field in _numeric_fields(get_facts(name).config_schema)]
    assert len(keys) > 20
    assert [key for key, valid in keys if valid is None] == []


@pytest.mark.parametrize("key, value, message", [
    ("data.batch_size", 0, "'data.batch_size' = 0 is out of range: use a value >= 1"),
    ("model.dropout", 1.0, "'model.dropout' = 1.0 is out of range: use a value >= 0 and < 1"),
    ("lr_schedule.base_lr", -0.1, "'lr_schedule.base_lr' = -0.1 is out of range: use a value > 0"),
    ("lr_schedule.decay_schedule", {0: 0.5}, "'lr_schedule.decay_schedule' has key 0 out of range: keys must be >= 1"),
    ("data.sample_shape", [32, 32, 0, 4], "'data.sample_shape' = [32, 32, 0, 4] has 0 out of range"),
    ("data.format", "zarr", "'data.format' = 'zarr' is not valid: use one of tfrecord, hdf5"),
    ("mlperf.division", "closd", "'mlperf.division' = 'closd' is not valid: use one of closed, open"),
])
def test_an_out_of_range_value_is_one_line_naming_key_value_and_range(tmp_path, key, value, message):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  batch_size: 4\n")
    with pytest.raises(HarnessError) as err:
        load_config(path, CosmoFlowConfig, {key: value})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_range_declared_on_the_shared_section_holds_in_every_benchmark(tmp_path):
    from deepcam.config import DeepCAMConfig

    path = tmp_path / "c.yaml"
    path.write_text("data:\n  n_epochs: 0\n")
    for schema in (CosmoFlowConfig, DeepCAMConfig):
        with pytest.raises(HarnessError, match=r"'data.n_epochs' = 0 is out of range: use a value >= 1 and <= 100000"):
            load_config(path, schema)
