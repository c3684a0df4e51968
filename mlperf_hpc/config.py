"""YAML configs loaded into typed dataclasses.

Each benchmark declares its config as nested dataclasses; this module turns a
YAML file into them, refusing unknown keys and wrong types with one line that
names the key, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mlperf_hpc.errors import HarnessError

T = TypeVar("T")


@dataclasses.dataclass
class SubmissionInfo:
    """The submission_* keys every MLPerf log carries."""
    org: str = "mlperf-hpc"
    division: str = "closed"
    status: str = "onprem"
    platform: str = "unknown-platform"
    benchmark_version: str = "3.0.0"


def load_config(path: str | Path, schema: type[T], overrides: dict[str, Any] | None = None) -> T:
    """Read ``path`` into the dataclass ``schema``.

    ``overrides`` maps dotted keys (``data.data_dir``) to values that replace
    the file's, e.g. from command-line flags.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"config file {path} not found: pass an existing YAML file with --config")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise HarnessError(f"config file {path}{where} is not valid YAML: fix the syntax") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section = raw
        *parents, leaf = dotted.split(".")
        for name in parents:
            section = section.setdefault(name, {})
        section[leaf] = value
    return _build(schema, raw, f"{path}", "")


def _build(schema: type[T], raw: Any, source: str, prefix: str) -> T:
    if not isinstance(raw, dict):
        raise HarnessError(f"config {source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise HarnessError(
            f"config {source}: unknown key '{prefix}{unknown[0]}' (known keys here: {known}); remove or rename it")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, source, f"{prefix}{name}")
    missing = [n for n, f in fields.items() if n not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise HarnessError(f"config {source}: required key '{prefix}{missing[0]}' is missing; add it")
    return schema(**values)


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, source, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, key + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise HarnessError(f"config {source}: '{key}' must be a list, got {value!r}")
        return [_coerce(args[0], v, source, key) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise HarnessError(f"config {source}: '{key}' must be a mapping, got {value!r}")
        kt, vt = args
        return {_coerce(kt, k, source, key): _coerce(vt, v, source, key) for k, v in value.items()}
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is Any or isinstance(value, hint):
        if hint is int and isinstance(value, bool):
            raise HarnessError(f"config {source}: '{key}' must be an integer, got {value!r}")
        return value
    raise HarnessError(f"config {source}: '{key}' must be {hint.__name__}, got {value!r}")
