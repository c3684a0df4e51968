"""The results store: every run the harness has seen, kept across campaigns
so that a campaign can be compared with the last one and with a system's
reference values.

SQLite through the standard library; the embedded default is
``logs/results.sqlite`` (``MLPERF_HPC_STORE`` or ``--store`` choose another).
A run is keyed by its log's content hash, so seeing the same log again (a
second collect, a check of the tree) records nothing new. The SQL keeps to
what every SQL database accepts (plain types, ``?`` parameters, no SQLite
functions), so a centre can point the store at a shared server later.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import statistics
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from core.errors import HarnessError
from core.runlog import RunLog, read_run_log

DEFAULT_STORE = Path(__file__).resolve().parents[1] / "logs" / "results.sqlite"
STORE_ENV = "MLPERF_HPC_STORE"


@dataclass
class RunRecord:
    log_hash: str
    campaign: str
    recorded: str
    log_path: str
    system: str
    benchmark: str
    division: str
    nodes: int
    ranks: int
    layout: str
    global_batch: int
    seed: int | None
    config_hash: str
    harness_commit: str
    status: str
    epochs: int
    time_to_train_s: float | None
    train_samples_per_s: float
    eval_samples_per_s: float
    staging_s: float

    @property
    def train_samples_per_s_per_node(self) -> float:
        return self.train_samples_per_s / max(self.nodes, 1)


@dataclass
class CampaignRecord:
    campaign: str
    created: str
    system: str
    benchmark: str
    kind: str                      # runs (submit --runs) or sweep
    runs: int
    job_dir: str
    harness_commit: str


# The records' annotations, as strings (postponed evaluation), to SQL types.
_COLUMN_TYPES = {"int": "INTEGER", "int | None": "INTEGER", "float": "REAL", "float | None": "REAL",
                 "str": "VARCHAR(512)"}


def _schema(table: str, record: type, key: str) -> str:
    columns = ", ".join(f"{f.name} {_COLUMN_TYPES[f.type]}" + (" PRIMARY KEY" if f.name == key else "")
                        for f in fields(record))
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"


RUN_COLUMNS = [f.name for f in fields(RunRecord)]
FILTERS = ("system", "benchmark", "division", "layout", "status", "campaign", "global_batch", "nodes")


def store_path(option: str | None = None) -> Path:
    return Path(option or os.environ.get(STORE_ENV) or DEFAULT_STORE)


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path)
            self.db.execute(_schema("runs", RunRecord, "log_hash"))
            self.db.execute(_schema("campaigns", CampaignRecord, "campaign"))
            self.db.execute("CREATE INDEX IF NOT EXISTS runs_by_group ON runs (system, benchmark, layout)")
            self.db.commit()
        except (OSError, sqlite3.Error) as err:
            raise HarnessError(f"results store {self.path} cannot be opened ({err}): pass --store PATH or set "
                               f"{STORE_ENV} to a writable file") from None

    def close(self) -> None:
        self.db.close()

    # --- writing ---------------------------------------------------------------------
    def record_log(self, path: str | Path, system: str = "", campaign: str = "") -> RunRecord | None:
        """Record one finished run's log, once; returns its record (the one
        already stored if it was seen before), or None for a file that is
        not a finished MLPerf log."""
        path = Path(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        known = self.run(digest)
        if known is not None:
            if campaign and not known.campaign:
                self.db.execute("UPDATE runs SET campaign = ? WHERE log_hash = ?", (campaign, digest))
                self.db.commit()
                known.campaign = campaign
            return known
        run = read_run_log(path)
        if run.run_stop_ms is None or not run.benchmark:
            return None
        record = _record_of(run, digest, system or str(run.values.get("submission_platform", "")), campaign)
        self.add([record])
        return record

    def add(self, records: list[RunRecord]) -> None:
        """Insert runs (not yet stored) in one transaction."""
        self.db.executemany(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES "
                            f"({', '.join('?' * len(RUN_COLUMNS))})",
                            [[getattr(r, c) for c in RUN_COLUMNS] for r in records])
        self.db.commit()

    def record_campaign(self, campaign: CampaignRecord) -> None:
        names = [f.name for f in fields(CampaignRecord)]
        self.db.execute("DELETE FROM campaigns WHERE campaign = ?", (campaign.campaign,))
        self.db.execute(f"INSERT INTO campaigns ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                        [getattr(campaign, n) for n in names])
        self.db.commit()

    # --- reading ---------------------------------------------------------------------
    def run(self, key: str) -> RunRecord | None:
        """A run by its log hash or a unique prefix of it."""
        rows = self.db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE log_hash LIKE ?",
                               (key + "%",)).fetchmany(2)
        if len(rows) > 1:
            raise HarnessError(f"run {key!r} matches several stored runs: give more of its hash")
        return RunRecord(*rows[0]) if rows else None

    def runs(self, filters: dict[str, str] | None = None) -> list[RunRecord]:
        """The stored runs matching every ``key=value`` filter, oldest first."""
        where, values = [], []
        for key, value in (filters or {}).items():
            if key not in FILTERS:
                raise HarnessError(f"unknown filter {key!r}: use {', '.join(FILTERS)}")
            where.append(f"{key} = ?")
            values.append(value)
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [RunRecord(*row) for row in self.db.execute(sql + " ORDER BY recorded, log_path", values)]

    def campaigns(self) -> list[CampaignRecord]:
        names = [f.name for f in fields(CampaignRecord)]
        return [CampaignRecord(*row) for row in
                self.db.execute(f"SELECT {', '.join(names)} FROM campaigns ORDER BY created")]


def _record_of(run: RunLog, digest: str, system: str, campaign: str) -> RunRecord:
    eval_s = run.eval_s
    eval_samples = float(run.values.get("eval_samples") or 0) * len(run.eval_spans)
    seed = run.seed if isinstance(run.seed, int) and not isinstance(run.seed, bool) else None
    config = json.dumps(run.hyperparameters, sort_keys=True, default=str)
    return RunRecord(
        log_hash=digest, campaign=campaign, recorded=time.strftime("%Y-%m-%dT%H:%M:%S"), log_path=str(run.path),
        system=system, benchmark=run.benchmark, division=run.division, nodes=run.nodes, ranks=run.processes,
        layout=run.layout, global_batch=run.global_batch, seed=seed,
        config_hash=hashlib.sha256(config.encode()).hexdigest()[:16],
        harness_commit=str(run.values.get("harness_commit", "")), status=run.status or "missing",
        epochs=run.epochs, time_to_train_s=run.time_to_train_s, train_samples_per_s=run.train_samples_per_s,
        eval_samples_per_s=eval_samples / eval_s if eval_s else 0.0, staging_s=run.staging_s)


def parse_filters(text: str | None, option: str = "filters") -> dict[str, str]:
    """'system=local,benchmark=cosmoflow' -> a filter mapping."""
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in FILTERS:
            raise HarnessError(f"{option} {text!r}: write key=value pairs separated by commas, keys from "
                               f"{', '.join(FILTERS)}")
        out[key.strip()] = value.strip()
    return out


# --- comparing ---------------------------------------------------------------------------

# (attribute, label, higher is better)
METRICS = (("time_to_train_s", "time to train [s]", False),
           ("train_samples_per_s", "train samples/s", True),
           ("eval_samples_per_s", "eval samples/s", True))


@dataclass
class MetricComparison:
    metric: str
    a: float | None
    b: float | None
    change_percent: float | None      # (b - a) / a
    verdict: str                      # better, worse, same, -


def compare(a: list[RunRecord], b: list[RunRecord], tolerance_percent: float = 1.0) -> list[MetricComparison]:
    """Per metric, the median of set ``b`` against that of set ``a``, with the
    direction that is better for that metric (lower time, higher rate)."""
    out = []
    for attribute, label, higher_better in METRICS:
        values = [[getattr(r, attribute) for r in runs if getattr(r, attribute)] for runs in (a, b)]
        med_a, med_b = (statistics.median(v) if v else None for v in values)
        if med_a is None or med_b is None:
            out.append(MetricComparison(label, med_a, med_b, None, "-"))
            continue
        change = 100.0 * (med_b - med_a) / med_a
        improved = change > 0 if higher_better else change < 0
        verdict = "same" if abs(change) <= tolerance_percent else ("better" if improved else "worse")
        out.append(MetricComparison(label, med_a, med_b, change, verdict))
    return out


def records_as_json(records: Iterable[Any]) -> str:
    return json.dumps([asdict(r) for r in records], indent=2)
