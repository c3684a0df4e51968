"""How a benchmark plugs into the harness: its facts, and the small interface
the shared driver trains it through.

A benchmark is a package (``cosmoflow/``, ``deepcam/``) that declares itself
once in ``BenchmarkFacts`` (name, metric, closed target, required runs,
configs, synthetic-data options) and implements ``Benchmark`` (model,
optimizer, learning-rate schedule, loss, metric, data files and pipelines).
The facts import no TensorFlow, so the command line, compliance checking and
reports ask them without starting TensorFlow; the driver (``mlperf_hpc.driver``)
owns the loop, the parallel layout, MLPerf logging, progress and stopping.

A benchmark is found only through the registry below: adding one means its
own folder and one registry line (or, out of tree, an entry in the
``MLPERF_HPC_BENCHMARKS`` environment variable).
"""
from __future__ import annotations

import abc
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import staging
from core.config import BenchmarkConfig, Valid, load_config
from core.errors import HarnessError

if TYPE_CHECKING:
    import tensorflow as tf

SPLITS = ("train", "validation")
RAW_SUFFIX = ".raw"                # of a staged copy in a benchmark's raw format

# name -> "module:attribute" of the benchmark's BenchmarkFacts.
BENCHMARKS = {"cosmoflow": "cosmoflow.facts:FACTS", "deepcam": "deepcam.facts:FACTS"}
# More benchmarks from outside this tree: "name=module:attribute,...".
EXTRA_BENCHMARKS_ENV = "MLPERF_HPC_BENCHMARKS"


@dataclass(frozen=True)
class SynthOption:
    """A command-line option a benchmark adds to ``data synth``."""
    flag: str                      # e.g. "--size"
    help: str
    default: Any
    kind: type = int               # int or str
    choices: tuple[str, ...] | None = None
    valid: Valid | None = None     # for numbers

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class BenchmarkFacts:
    """What everything outside a benchmark's folder may know about it."""
    name: str                      # the submission_benchmark value
    metric_key: str                # MLPerf key of the eval metric (eval_error, eval_accuracy)
    metric_name: str               # as shown in progress lines ("val MAE")
    lower_is_better: bool
    target: float                  # the closed division's quality target
    required_runs: int             # strong-scaling runs per submission
    config_schema: type            # a BenchmarkConfig dataclass
    configs_dir: Path
    default_config: str            # file name in configs_dir: the small config runs default to
    closed_config: str             # file name in configs_dir: the full-size closed config
    plugin: str                    # "module:Class" of the Benchmark implementation
    synth: str                     # "module:function" writing a synthetic dataset (see synthesise)
    synth_samples: tuple[int, int]  # default train / validation counts (what the default config reads)
    synth_options: tuple[SynthOption, ...] = field(default_factory=tuple)
    synth_outputs: tuple[str, ...] = ()  # files synth writes into --out besides the split folders
    perfect_metric: float = 0.0    # the best value the metric can take (1 for an IoU)

    @property
    def target_text(self) -> str:
        return f"{self.metric_name} {'<=' if self.lower_is_better else '>='} {self.target}"

    def reached(self, value: float, target: float | None = None) -> bool:
        target = self.target if target is None else target
        return value <= target if self.lower_is_better else value >= target

    def config_path(self, path: str | Path | None = None) -> Path:
        return Path(path) if path is not None else self.configs_dir / self.default_config

    def load_config(self, path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                    sources: dict[str, str] | None = None) -> BenchmarkConfig:
        """The config at ``path`` (default: the benchmark's default config),
        every value range-checked, then the benchmark's own cross-field rules."""
        if isinstance(path, str) and not path.strip():
            raise HarnessError("--config needs a YAML file path, got ''")
        path = self.config_path(path)
        config = load_config(path, self.config_schema, overrides, sources, flag="--config")
        config.validate(str(path))
        return config

    def synthesise(self, out: str | Path, n_train: int, n_valid: int, seed: int, options: dict[str, Any],
                   progress: bool = True) -> str:
        """Write a synthetic dataset; returns a one-line description of it."""
        return _resolve(self.synth)(out, n_train, n_valid, seed, options, progress)


class Benchmark(abc.ABC):
    """A benchmark as the driver trains it. ``facts`` are the plug-in's own
    (a class attribute); ``config`` is always an instance of
    ``facts.config_schema``, whose shared sections (``config.mlperf``,
    ``config.data``, ``config.train``) the driver reads itself."""
    facts: BenchmarkFacts
    shard_style = "round_robin"    # how dataset_files are split among replicas (see staging.shard)
    input_dtype = "float32"        # of the samples as the pipelines yield them (their stored dtype)

    def load_config(self, path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                    sources: dict[str, str] | None = None) -> BenchmarkConfig:
        return self.facts.load_config(path, overrides, sources)

    # --- model -----------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self, config: Any) -> "tf.keras.Model": ...

    def mesh_model(self, config: Any, split: tuple[int, int]) -> Any:
        """The model in Mesh TensorFlow with each sample split ``split`` ways,
        for the spatial and hybrid layouts."""
        raise HarnessError(f"{self.facts.name} has no Mesh TensorFlow model yet: use --layout data")

    @abc.abstractmethod
    def make_optimizer(self, config: Any) -> "tf.keras.optimizers.Optimizer": ...

    @abc.abstractmethod
    def learning_rate(self, config: Any, epoch: int, step: int, global_batch: int) -> float:
        """Learning rate for 0-based ``epoch`` and 0-based optimizer ``step``
        (counted from the start of training) at this global batch size;
        per-epoch schedules ignore ``step``."""

    @abc.abstractmethod
    def hyperparameters(self, config: Any, global_batch: int, ranks_per_sample: int) -> dict[str, Any]:
        """MLPerf keys (opt_*, dropout, ...) and their values for the log;
        ``ranks_per_sample`` is how many processes split each sample."""

    def normalise(self, config: Any, x: "tf.Tensor") -> "tf.Tensor":
        """Samples as the pipelines yield them (raw, ``input_dtype``) to what
        the model takes. Every trainer runs it as the first operation of its
        training and evaluation steps, on the device that trains, so the
        host pipeline only reads and batches: the per-voxel arithmetic
        would otherwise cost host cores an accelerator is waiting on.
        Elementwise over channels-last samples of any leading shape, so a
        spatial layout normalises just its own block (an option that is not
        elementwise must be refused by ``mesh_model``)."""
        return x

    @abc.abstractmethod
    def loss(self, labels: "tf.Tensor", predictions: "tf.Tensor") -> "tf.Tensor":
        """Mean loss over the local batch."""

    @abc.abstractmethod
    def metric_sums(self, labels: "tf.Tensor", predictions: "tf.Tensor") -> tuple["tf.Tensor", "tf.Tensor"]:
        """(sum, count) of the eval metric over a batch; the global metric is
        the sum over all replicas divided by the count over all replicas."""

    # --- data ------------------------------------------------------------------

    @abc.abstractmethod
    def dataset_files(self, config: Any, split: str) -> list[str]:
        """Every file of ``split`` the config reads, sorted, cut to its sample count."""

    @abc.abstractmethod
    def check_file(self, config: Any, path: str) -> None:
        """Raise a one-line HarnessError if ``path`` is unreadable or holds a
        sample of the wrong shape."""

    @abc.abstractmethod
    def pipelines(self, config: Any, shard_index: int, n_shards: int, seed: int) -> "Pipelines":
        """This replica's input, read from ``local_files``; ``seed`` is the
        run's (shuffling differs per run)."""

    def shared_files(self, config: Any) -> list[str]:
        """Files besides the samples that every replica reads (normalisation statistics)."""
        return []

    def shard_files(self, config: Any, split: str, shard_index: int, n_shards: int) -> list[str]:
        """This replica's fixed share of a split's files."""
        return staging.shard(self.dataset_files(config, split), n_shards, shard_index, self.shard_style)

    def reads_raw(self, config: Any) -> bool:
        """Whether the pipelines read staged copies in the raw format."""
        return bool(config.data.stage_dir) and config.data.stage_format == "raw"

    def write_raw(self, config: Any, src: str, dst: Path) -> None:
        """Write the samples of the data file ``src`` to ``dst`` in this
        benchmark's raw staging format; a bad sample is a one-line HarnessError."""
        raise HarnessError(f"{self.facts.name} has no raw staging format: set data.stage_format to copy")

    def local_files(self, config: Any, split: str, shard_index: int, n_shards: int) -> list[str]:
        """Where this replica reads its share from: staged copies, if staged."""
        return staging.local_paths(self.shard_files(config, split, shard_index, n_shards), config.data.stage_dir,
                                   RAW_SUFFIX if self.reads_raw(config) else "")

    def stage(self, config: Any, shard_index: int, n_shards: int) -> None:
        """Copy this replica's files to node-local storage, or write them in
        the raw format as they are copied, if configured."""
        if not config.data.stage_dir:
            return
        raw = self.reads_raw(config)
        convert = (lambda src, dst: self.write_raw(config, src, dst)) if raw else None
        for split in SPLITS:
            staging.stage(self.shard_files(config, split, shard_index, n_shards), config.data.stage_dir,
                          convert, RAW_SUFFIX if raw else "")

    def explain_data_error(self, config: Any, shard_index: int, n_shards: int, error: Exception) -> Exception:
        """Turn an input-pipeline failure into a one-line error naming the file."""
        for split in SPLITS:
            for path in self.local_files(config, split, shard_index, n_shards):
                self.check_file(config, path)
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        return HarnessError(f"input pipeline failed reading {config.data.data_dir} ({reason}); "
                            f"no single bad file found")

    def reached(self, config: Any, value: float) -> bool:
        return self.facts.reached(value, config.train.target)


@dataclass
class SplitPipeline:
    """One split of one replica's input."""
    dataset: "tf.data.Dataset"     # infinite: training batches, or validation passes of ``steps`` batches
    files: list[str]
    steps: int                     # batches per epoch


@dataclass
class Pipelines:
    train: SplitPipeline
    valid: SplitPipeline
    n_train: int                   # global sample counts (logged)
    n_valid: int


# --- the registry ---------------------------------------------------------------------

def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def registry() -> dict[str, str]:
    """name -> facts location, the built-in benchmarks and any from the environment."""
    extra = {}
    for item in filter(None, os.environ.get(EXTRA_BENCHMARKS_ENV, "").split(",")):
        name, sep, target = item.strip().partition("=")
        if not sep or ":" not in target:
            raise HarnessError(f"{EXTRA_BENCHMARKS_ENV} entry '{item}' must look like name=module:attribute")
        extra[name] = target
    return {**BENCHMARKS, **extra}


def benchmark_names() -> list[str]:
    return list(registry())


def get_facts(name: str) -> BenchmarkFacts:
    entries = registry()
    if name not in entries:
        raise HarnessError(f"unknown benchmark '{name}': use one of {', '.join(entries)}")
    facts = _resolve(entries[name])
    if facts.name != name:
        raise HarnessError(f"registry entry '{name}' points at the facts of '{facts.name}': fix the registry")
    return facts


def get_benchmark(name: str) -> Benchmark:
    benchmark = _resolve(get_facts(name).plugin)()
    if benchmark.facts.name != name:
        raise HarnessError(f"the plug-in of '{name}' declares the facts of '{benchmark.facts.name}': fix its facts")
    return benchmark


def facts_for_log(benchmark: str) -> BenchmarkFacts | None:
    """The facts of a benchmark named in a log, or None for one this harness
    does not know (a log may come from anywhere)."""
    try:
        return get_facts(benchmark)
    except (HarnessError, ImportError, AttributeError):
        return None

