"""The ``mlperf-hpc results`` commands: what the results store holds, one
run in full, and two campaigns (or two filter sets) compared, with the
system's reference values."""
from __future__ import annotations

import argparse
import re
from dataclasses import asdict
from typing import Any

from core.errors import HarnessError
from mlperf_hpc.results_store import (FILTERS, ResultsStore, RunRecord, compare, parse_filters, records_as_json,
                                      store_path)


def open_store(args: argparse.Namespace) -> ResultsStore:
    return ResultsStore(store_path(getattr(args, "store", None)))


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="results store (default: $MLPERF_HPC_STORE, else logs/results.sqlite)")


def _selection(store: ResultsStore, text: str) -> list[RunRecord]:
    """A campaign id, or key=value filters."""
    if "=" in text:
        return store.runs(parse_filters(text, "selection"))
    if not any(c.campaign == text for c in store.campaigns()):
        raise HarnessError(f"no campaign {text!r} in {store.path}: 'mlperf-hpc results list' shows them, or "
                           f"select runs with key=value filters ({', '.join(FILTERS)})")
    return store.runs({"campaign": text})


def _fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def reference_flags(records: list[RunRecord]) -> dict[str, str]:
    """Each run outside its system's reference values: log hash -> why."""
    from launch.system import available_systems, load_system

    flags, systems = {}, {}
    for record in records:
        if record.system not in available_systems():
            continue
        system = systems.setdefault(record.system, load_system(record.system))
        reference = system.references.get(f"{record.benchmark}/{record.layout}")
        if reference is None:
            continue
        value = record.train_samples_per_s_per_node
        low = reference.target * (1 + reference.lower)
        high = reference.target * (1 + reference.upper) if reference.upper is not None else None
        if value < low or (high is not None and value > high):
            flags[record.log_hash] = (f"{value:.1f} train samples/s per node is outside {record.system}'s reference "
                                      f"{reference.target:g} ({low:.1f}-{_fmt(high, 1)})")
    return flags


def _cmd_results(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        if args.action == "list":
            records = store.runs(parse_filters(args.filters, "filters"))
            if args.json:
                print(records_as_json(records))
                return 0
            rows = [("RUN", "CAMPAIGN", "SYSTEM", "BENCHMARK", "LAYOUT", "NODES", "BATCH", "SEED", "STATUS", "EPOCHS",
                     "TTT [min]", "TRAIN/S")]
            rows += [(r.log_hash[:12], r.campaign or "-", r.system, r.benchmark, r.layout, str(r.nodes),
                      str(r.global_batch), _fmt(r.seed), r.status, str(r.epochs),
                      _fmt(r.time_to_train_s / 60 if r.time_to_train_s is not None else None),
                      _fmt(r.train_samples_per_s, 1)) for r in records]
            widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
            print("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows))
            print(f"{len(records)} run(s) in {store.path}")
        elif args.action == "show":
            if not re.fullmatch(r"[0-9a-f]{4,64}", args.run):
                raise HarnessError(f"RUN {args.run!r} must be a run's hash (at least 4 hex digits), as listed")
            record = store.run(args.run)
            if record is None:
                raise HarnessError(f"no run {args.run!r} in {store.path}: 'mlperf-hpc results list' shows them")
            for key, value in asdict(record).items():
                print(f"{key:22s} {_fmt(value, 3)}")
        elif args.action == "compare":
            a, b = _selection(store, args.a), _selection(store, args.b)
            if not a or not b:
                raise HarnessError(f"{'A' if not a else 'B'} selects no stored runs")
            print(f"A: {args.a} ({len(a)} runs)   B: {args.b} ({len(b)} runs)   medians, B against A")
            for m in compare(a, b):
                change = f"{m.change_percent:+.1f}%" if m.change_percent is not None else "-"
                print(f"{m.metric:20s} {_fmt(m.a):>10s} {_fmt(m.b):>10s} {change:>8s}  {m.verdict}")
            if args.reference:
                both = list({r.log_hash: r for r in a + b}.values())
                flags = reference_flags(both)
                for record in both:
                    if record.log_hash in flags:
                        print(f"OUTSIDE  {record.log_hash[:12]}  {flags[record.log_hash]}")
                print(f"{len(flags)} run(s) outside their system's reference values")
                return 1 if flags else 0
    finally:
        store.close()
    return 0


def add_results_commands(sub: Any) -> None:
    results = sub.add_parser(
        "results", help="the results store: runs kept across campaigns, compared",
        description="Every run that submit, collect or check has seen, kept in an SQLite store keyed by its "
                    "log's content hash.")
    actions = results.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="stored runs", description="Stored runs, oldest first.")
    listing.add_argument("filters", nargs="?", help=f"key=value[,key=value] with keys {', '.join(FILTERS)}")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one run in full", description="One stored run, every field.")
    show.add_argument("run", metavar="RUN", help="the run's hash, or its first digits")
    comp = actions.add_parser(
        "compare", help="two campaigns or filter sets, metric by metric",
        description="Medians of B against A for each metric, in %, saying whether B is better (lower time to "
                    "train, higher throughput). A and B are campaign ids or key=value filters.")
    comp.add_argument("a", metavar="A")
    comp.add_argument("b", metavar="B")
    comp.add_argument("--reference", action="store_true",
                      help="also flag runs outside their system's reference values (launch/systems/*.yaml); "
                           "exit 1 if any")
    for p in (listing, show, comp):
        add_store_option(p)
    results.set_defaults(func=_cmd_results)
