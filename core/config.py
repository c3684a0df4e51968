"""YAML configs loaded into typed dataclasses, with the valid range of every
value declared beside its field.

Each benchmark declares its config as nested dataclasses built on the shared
sections here (``mlperf``, ``data``, ``train``); this module turns a YAML
file plus command-line overrides into them. Unknown keys, wrong types and
values outside a field's declared range are refused with one line naming the
key (or the command-line option it came from), the value and what is valid,
so a typo never silently falls back to a default and a batch of 0 never
reaches the training loop.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from core.errors import HarnessError

T = TypeVar("T")
KeyNamer = typing.Callable[[str], str]


# --- valid ranges --------------------------------------------------------------

@dataclass(frozen=True)
class Valid:
    """What a field accepts: numbers within bounds (each bound inclusive or
    not), one of a few strings, and for lists and mappings the same rule per
    element / value (``keys`` constrains a mapping's keys)."""
    minimum: float | None = None         # value >= minimum
    above: float | None = None           # value > above
    maximum: float | None = None         # value <= maximum
    below: float | None = None           # value < below
    one_of: tuple[str, ...] | None = None
    length: int | None = None            # lists: exactly this many elements
    keys: "Valid | None" = None

    def accepts(self, value: Any) -> bool:
        if self.one_of is not None:
            return value in self.one_of
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True                   # type errors are reported elsewhere
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.minimum is None or value >= self.minimum) and (self.above is None or value > self.above)
                and (self.maximum is None or value <= self.maximum) and (self.below is None or value < self.below))

    def __str__(self) -> str:
        if self.one_of is not None:
            return "one of " + ", ".join(self.one_of)
        parts = []
        if self.minimum is not None:
            parts.append(f">= {_number(self.minimum)}")
        elif self.above is not None:
            parts.append(f"> {_number(self.above)}")
        if self.maximum is not None:
            parts.append(f"<= {_number(self.maximum)}")
        elif self.below is not None:
            parts.append(f"< {_number(self.below)}")
        return " and ".join(parts) or "any value"


def _number(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def ranged(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **valid: Any) -> Any:
    """A dataclass field with a declared valid range, e.g.
    ``batch_size: int = ranged(4, minimum=1)`` or
    ``format: str = ranged("tfrecord", one_of=("tfrecord", "hdf5"))``."""
    return field(default=default, default_factory=factory, metadata={"valid": Valid(**valid)})


# --- the sections every benchmark config has -------------------------------------

# The MLPerf HPC rulesets the official tools know, and the one runs follow.
HPC_RULESETS = ("1.0.0", "2.0.0", "3.0.0")
HPC_RULESET = "3.0.0"
# From this ruleset on, data may start on any durable storage: staging may be untimed.
UNTIMED_STAGING_RULESET = "3.0.0"


@dataclass
class SubmissionInfo:
    """The submission_* keys every MLPerf log carries."""
    org: str = "mlperf-hpc"
    division: str = ranged("closed", one_of=("closed", "open"))
    status: str = ranged("onprem", one_of=("onprem", "cloud", "preview", "research"))
    platform: str = "unknown-platform"
    benchmark_version: str = ranged(HPC_RULESET, one_of=HPC_RULESETS)


@dataclass
class DataConfig:
    """What the driver and the command line need of every benchmark's data."""
    data_dir: str = "data"
    stage_dir: str | None = None       # node-local copy of this replica's shard
    # Where staging sits: inside init (untimed; the HPC v3.0 rules allow it,
    # within init's 30 minutes) or after run_start (timed, as v1.0/v2.0 require).
    staging: str = ranged("init", one_of=("init", "timed"))
    # What staging writes: the files as they are, or the samples converted
    # to the benchmark's raw format (fixed-size records the pipeline reads
    # with no decompression or parsing; see each benchmark's data module).
    stage_format: str = ranged("copy", one_of=("copy", "raw"))
    n_train: int = ranged(1, minimum=1)
    n_valid: int = ranged(1, minimum=1)
    batch_size: int = ranged(1, minimum=1)       # per data-parallel replica
    n_epochs: int = ranged(1, minimum=1, maximum=100000)   # at most; the run stops at the target
    shuffle: bool = True
    # Keep the decoded samples in memory after the first epoch reads them
    # (for data sets whose shard fits; the full-size ones do not).
    cache: bool = False
    prefetch: int = ranged(2, minimum=1)
    n_parallel_reads: int = ranged(2, minimum=1)


@dataclass
class DivergenceConfig:
    """When the driver stops a run that can no longer reach its target
    (``train.divergence``), rather than let it spend its epoch budget."""
    enabled: bool = True
    # A dead network: the metric and the training loss both unchanged (a
    # relative change below stuck_tolerance) over stuck_epochs epochs.
    stuck_epochs: int = ranged(3, minimum=2)
    stuck_tolerance: float = ranged(1e-4, minimum=0)
    # Blown up: the metric worse_factor times worse than the best so far
    # (its distance from a perfect score, for a metric where higher is
    # better) for worse_epochs epochs in a row.
    worse_factor: float = ranged(2.0, above=1)
    worse_epochs: int = ranged(3, minimum=1)


@dataclass
class TrainConfig:
    target: float = 0.0                # the quality target; each benchmark sets the closed one
    seed: int | None = ranged(None, minimum=0, below=2 ** 31)   # null: a fresh seed per run
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)


@dataclass
class BenchmarkConfig:
    """The shared base of every benchmark's config. A benchmark extends the
    sections and adds its own (model, optimizer, ...), and states the rules
    that span fields in the two hooks, which import no TensorFlow so that
    job scripts are checked by the same rules before they are queued."""
    mlperf: SubmissionInfo = field(default_factory=SubmissionInfo)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, source: str) -> None:
        """Refuse, in one line naming the keys, values that are each in range
        but do not work together. Benchmarks extend it (and call it)."""
        if self.data.stage_format == "raw" and not self.data.stage_dir:
            raise HarnessError(f"config {source}: data.stage_format raw converts the samples as they are "
                               f"staged, so it needs data.stage_dir (--stage-dir): set one, or stage_format copy")
        if self.data.staging == "init" and self.mlperf.benchmark_version != UNTIMED_STAGING_RULESET:
            raise HarnessError(f"config {source}: data.staging 'init' (untimed staging) needs the hpc "
                               f"{UNTIMED_STAGING_RULESET} rules; "
                               f"mlperf.benchmark_version {self.mlperf.benchmark_version} times staging: set "
                               f"data.staging to timed")

    def check_run(self, split: tuple[int, int], data_groups: int, name: "KeyNamer" = str) -> None:
        """Refuse, in one line, a run this config cannot make with each sample
        split ``split`` ways and ``data_groups`` data-parallel replicas.
        ``name(key)`` says where a dotted key's value came from (a flag or
        the config file), for the message."""


# --- loading -------------------------------------------------------------------------

def load_config(path: str | Path, schema: type[T], overrides: dict[str, Any] | None = None,
                sources: dict[str, str] | None = None, flag: str | None = None) -> T:
    """Read ``path`` into the dataclass ``schema``.

    ``overrides`` maps dotted keys (``data.data_dir``) to values that replace
    the file's, e.g. from command-line flags; ``sources`` names where an
    override came from (``data.batch_size`` -> ``--batch-size``), so that an
    error points at what the user typed; ``flag`` names the option that gave
    the file itself.
    """
    path = Path(path)
    what = f"{flag} {path}" if flag else f"config file {path}"
    if not path.is_file():
        raise HarnessError(f"{what}: not found: pass an existing YAML file{f' with {flag}' if flag else ''}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise HarnessError(f"{what}{where} is not valid YAML: fix the syntax") from None
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"{what} cannot be read ({err}): pass a readable YAML file") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"{what} must hold a mapping of sections, not {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        section = raw
        *parents, leaf = dotted.split(".")
        for name in parents:
            section = section.setdefault(name, {})
            if not isinstance(section, dict):
                raise HarnessError(f"config {path}: '{name}' must be a mapping of keys")
        section[leaf] = value
    return _Builder(str(path), sources or {}).build(schema, raw, "")


def _declared_range(schema: type, name: str) -> Valid | None:
    """The range declared for a field, by the schema or, when a subclass
    only changes the default, by the base section that declared the field."""
    for cls in schema.__mro__:
        declared = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        if name in declared and "valid" in declared[name].metadata:
            return declared[name].metadata["valid"]
    return None


class _Builder:
    def __init__(self, source: str, sources: dict[str, str]):
        self.source, self.sources = source, sources

    def fail(self, key: str, problem: str) -> HarnessError:
        option = self.sources.get(key)
        where = (option if key in option else f"{option} ({key})") if option else f"config {self.source}: '{key}'"
        return HarnessError(f"{where} {problem}")

    def build(self, schema: type[T], raw: Any, prefix: str) -> T:
        if not isinstance(raw, dict):
            raise self.fail(prefix.rstrip(".") or "top level", "must be a mapping of keys")
        fields = {f.name: f for f in dataclasses.fields(schema)}
        hints = typing.get_type_hints(schema)
        unknown = sorted(set(map(str, raw)) - set(fields))
        if unknown:
            key = f"{prefix}{unknown[0]}"
            known = ", ".join(sorted(fields))
            option = next((o for k, o in self.sources.items() if k == key or k.startswith(key + ".")), None)
            where = option if option else f"config {self.source}"
            raise HarnessError(f"{where}: unknown key '{key}' (known keys here: {known}); remove or rename it")
        values = {}
        for name, value in raw.items():
            key = f"{prefix}{name}"
            values[name] = self.coerce(hints[name], value, key)
            valid = _declared_range(schema, name)
            if valid is not None:
                self.check(valid, values[name], key)
        missing = [n for n, f in fields.items() if n not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise HarnessError(f"config {self.source}: required key '{prefix}{missing[0]}' is missing; add it")
        return schema(**values)

    def check(self, valid: Valid, value: Any, key: str) -> None:
        if value is None:
            return
        if isinstance(value, dict):
            for k, v in value.items():
                if valid.keys is not None and not valid.keys.accepts(k):
                    raise self.fail(key, f"has key {k!r} out of range: keys must be {valid.keys}")
                if not valid.accepts(v):
                    raise self.fail(key, f"has value {v!r} at {k!r} out of range: values must be {valid}")
            return
        if isinstance(value, list):
            if valid.length is not None and len(value) != valid.length:
                raise self.fail(key, f"= {value!r} must have {valid.length} values, not {len(value)}")
            for v in value:
                if not valid.accepts(v):
                    raise self.fail(key, f"= {value!r} has {v!r} out of range: each value must be {valid}")
            return
        if not valid.accepts(value):
            raise self.fail(key, f"= {value!r} is out of range: use a value {valid}" if valid.one_of is None
                            else f"= {value!r} is not valid: use {valid}")

    def coerce(self, hint: Any, value: Any, key: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.coerce(inner[0], value, key)
        if dataclasses.is_dataclass(hint):
            return self.build(hint, value, key + ".")
        if origin in (list, tuple):
            if not isinstance(value, (list, tuple)):
                raise self.fail(key, f"must be a list, got {value!r}")
            return [self.coerce(args[0], v, key) for v in value] if args else list(value)
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(key, f"must be a mapping, got {value!r}")
            kt, vt = args
            return {self.coerce(kt, k, key): self.coerce(vt, v, key) for k, v in value.items()}
        if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if hint is Any or isinstance(value, hint):
            if hint is int and isinstance(value, bool):
                raise self.fail(key, f"must be an integer, got {value!r}")
            return value
        raise self.fail(key, f"must be {hint.__name__}, got {value!r}")
