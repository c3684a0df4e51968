"""One MLPerf log read with the official parser's line reader, with the
quantities the checks and reports need (phases, epochs, throughput,
hyperparameters)."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.benchmark import facts_for_log
from core.config import HPC_RULESET

# Keys whose values must agree across the runs of one benchmark submission.
HYPERPARAMETER_PREFIXES = ("opt_", "global_batch_size", "dropout", "batchnorm_group_size",
                           "gradient_accumulation_frequency", "scheduler_")


@dataclass
class RunLog:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)        # first value of each key
    values_of: dict[str, list[Any]] = field(default_factory=dict)  # every value of each key, in order
    metadata: dict[str, dict] = field(default_factory=dict)     # first metadata of each key
    times: dict[str, list[float]] = field(default_factory=dict)  # every timestamp (ms) of each key
    epoch_spans: list[tuple[int, float, float]] = field(default_factory=list)
    eval_spans: list[tuple[int, float, float]] = field(default_factory=list)
    series: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)  # (epoch_num, value) per key
    timestamps: list[float] = field(default_factory=list)        # in file order
    parse_errors: list[str] = field(default_factory=list)      # "line N: why", for lines that are not records

    # --- identity ----------------------------------------------------------------
    @property
    def benchmark(self) -> str:
        return str(self.values.get("submission_benchmark", ""))

    @property
    def division(self) -> str:
        return str(self.values.get("submission_division", ""))

    @property
    def seed(self) -> Any:
        return self.values.get("seed")

    @property
    def status(self) -> str:
        return str(self.metadata.get("run_stop", {}).get("status", ""))

    @property
    def nodes(self) -> int:
        return int(self.values.get("number_of_nodes") or 0)

    @property
    def processes(self) -> int:
        return int(self.values.get("number_of_ranks") or self.nodes or 0)

    @property
    def layout(self) -> str:
        return str(self.values.get("parallel_layout", "unknown"))

    @property
    def global_batch(self) -> int:
        return int(self.values.get("global_batch_size") or 0)

    @property
    def instance_id(self) -> Any:
        return self.metadata.get("run_start", {}).get("instance_id")

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if k.startswith(HYPERPARAMETER_PREFIXES)}

    # --- timing --------------------------------------------------------------------
    def _span(self, start: str, stop: str) -> float:
        """Seconds between the first ``start`` and the last ``stop``."""
        if not self.times.get(start) or not self.times.get(stop):
            return 0.0
        return (self.times[stop][-1] - self.times[start][0]) / 1e3

    @property
    def run_start_ms(self) -> float | None:
        return self.times.get("run_start", [None])[0]

    @property
    def run_stop_ms(self) -> float | None:
        return self.times.get("run_stop", [None])[-1]

    @property
    def time_to_train_s(self) -> float | None:
        if self.run_start_ms is None or self.run_stop_ms is None:
            return None
        return (self.run_stop_ms - self.run_start_ms) / 1e3

    @property
    def init_s(self) -> float:
        return self._span("init_start", "init_stop")

    @property
    def staging_s(self) -> float:
        return self._span("staging_start", "staging_stop")

    @property
    def staging_timed(self) -> bool:
        """Whether staging sat inside the timed region (after run_start)."""
        start, run_start = self.times.get("staging_start"), self.run_start_ms
        return bool(start and run_start is not None and start[0] >= run_start)

    @property
    def train_s(self) -> float:
        return sum(stop - start for _, start, stop in self.epoch_spans) / 1e3

    @property
    def eval_s(self) -> float:
        return sum(stop - start for _, start, stop in self.eval_spans) / 1e3

    @property
    def epochs(self) -> int:
        return len(self.epoch_spans)

    @property
    def train_samples_per_s(self) -> float:
        """Training samples per second over the epochs (eval and staging excluded)."""
        samples = float(self.values.get("train_samples") or 0) * self.epochs
        return samples / self.train_s if self.train_s else 0.0

    @property
    def metrics(self) -> list[tuple[int, float]]:
        """(epoch, value) of the benchmark's eval metric, for a benchmark this harness knows."""
        facts = facts_for_log(self.benchmark)
        return [(e, float(v)) for e, v in self.series.get(facts.metric_key, [])] if facts else []

    @property
    def final_metric(self) -> float | None:
        return self.metrics[-1][1] if self.metrics else None


def parse_lines(path: Path, ruleset: str) -> tuple[list, list[str]]:
    """The log's records, as the official parser reads each line, and a
    reason per line it cannot read. The official ``parse_file`` stops with a
    KeyError or TypeError at a line that is JSON but not a record (a
    truncated or hand-edited log), so each line is read on its own here."""
    parser = importlib.import_module(f"mlperf_logging.compliance_checker.mlp_parser.ruleset_{ruleset.replace('.', '')}")
    loglines, errors = [], []
    with open(path, encoding="latin-1") as f:
        for number, line in enumerate(parser.strip_and_dedup(f), 1):
            try:
                record = parser.string_to_logline(number, line.strip())
                if not isinstance(record.key, str) or not isinstance(record.value["metadata"] or {}, dict):
                    raise ValueError("its key is not a string or its metadata not a mapping")
                loglines.append(record)
            except (ValueError, KeyError, TypeError) as err:
                problem = {KeyError: f"has no {err}", TypeError: "is not a JSON object of time_ms, key, value and "
                           "metadata"}.get(type(err), str(err))
                errors.append(f"MLLOG record {number}: {problem}"[:200])
    return loglines, errors


def read_run_log(path: str | Path, ruleset: str = HPC_RULESET) -> RunLog:
    path = Path(path)
    loglines, errors = parse_lines(path, ruleset)
    run = RunLog(path, parse_errors=errors)
    open_spans: dict[tuple[str, int], float] = {}
    for line in loglines:
        key, value = line.key, line.value
        run.timestamps.append(line.timestamp)
        run.times.setdefault(key, []).append(line.timestamp)
        run.values.setdefault(key, value.get("value"))
        run.values_of.setdefault(key, []).append(value.get("value"))
        run.metadata.setdefault(key, value.get("metadata") or {})
        epoch = (value.get("metadata") or {}).get("epoch_num", 0)
        if key in ("epoch_start", "eval_start"):
            open_spans[(key, epoch)] = line.timestamp
        elif key in ("epoch_stop", "eval_stop"):
            start = open_spans.pop((key.replace("stop", "start"), epoch), None)
            if start is not None:
                (run.epoch_spans if key == "epoch_stop" else run.eval_spans).append((epoch, start, line.timestamp))
        if "epoch_num" in (value.get("metadata") or {}):
            run.series.setdefault(key, []).append((epoch, value.get("value")))
    return run
