"""Throughput scaling reports from the MLPerf logs of a sweep.

Per run: layout, nodes, processes, global batch, training samples/s (from
epoch timings, so eval and staging are excluded), time to train, epochs to
converge, and the phases of the run; speedup and parallel efficiency against
the smallest run. Written as CSV, Markdown and a self-contained HTML page
(plots embedded) with the PNG plots beside them.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mlperf_hpc.compliance import find_logs
from core.errors import HarnessError
from core.runlog import read_run_log


@dataclass
class ReportRow:
    log: str
    benchmark: str
    layout: str
    nodes: int
    processes: int
    global_batch: int
    samples_per_s: float
    time_to_train_min: float | None
    epochs: int
    status: str
    init_s: float
    staging_s: float
    staging_timed: bool
    train_s: float
    eval_s: float
    threads: int | None                # per process, where the log records it
    speedup: float = 1.0
    efficiency: float = 1.0

    @property
    def eval_share(self) -> float:
        """Evaluation time as a fraction of training time."""
        return self.eval_s / self.train_s if self.train_s else 0.0

    @property
    def shape(self) -> str:
        """processes x threads per process, as the plots label points."""
        return f"{self.processes}x{self.threads}" if self.threads else f"{self.processes}x?"


EVAL_SHARE_WARNING = 0.20        # evaluation above this share of training time is worth a look


def collect_rows(paths: list[str | Path]) -> tuple[list[ReportRow], str]:
    """Rows sorted by scale, and the scale's name (nodes, or processes when
    every run used the same number of nodes)."""
    logs = [log for path in paths for log in find_logs(Path(path))]
    if not logs or not all(log.is_file() for log in logs):
        missing = next((str(p) for p in logs if not p.is_file()), " ".join(map(str, paths)))
        raise HarnessError(f"no MLPerf logs found at {missing}: pass log files or directories holding them")
    rows = []
    for log in logs:
        run = read_run_log(log)
        if run.run_start_ms is None:
            reason = f" ({run.parse_errors[0]})" if run.parse_errors else ""
            raise HarnessError(f"{log} records no run_start{reason}: it is not a run to report; leave it out")
        ttt = run.time_to_train_s
        rows.append(ReportRow(str(log), run.benchmark, run.layout, max(run.nodes, 1), max(run.processes, 1),
                              run.global_batch, run.train_samples_per_s, ttt / 60 if ttt is not None else None,
                              run.epochs, run.status, run.init_s, run.staging_s, run.staging_timed, run.train_s,
                              run.eval_s, run.values.get("threads_per_process")))
    scale = "nodes" if len({r.nodes for r in rows}) > 1 else "processes"
    rows.sort(key=lambda r: (getattr(r, scale), r.layout, r.log))
    base = rows[0]
    for row in rows:
        if base.samples_per_s > 0:
            row.speedup = row.samples_per_s / base.samples_per_s
            row.efficiency = row.speedup / (getattr(row, scale) / max(getattr(base, scale), 1))
    return rows, scale


def _plots(rows: list[ReportRow], scale: str, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layouts = sorted({r.layout for r in rows})
    base = rows[0]
    xs = sorted({getattr(r, scale) for r in rows})
    files = []

    def save(fig, name: str) -> None:
        files.append(out / f"{name}.png")
        fig.tight_layout()
        # What the plot shows, as the figure holds it, in the PNG's text chunk:
        # a reader (or a test) can tell the axes and series without the eye.
        ax = fig.axes[0]
        shown = {"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                 "series": [h.get_label() for h in ax.get_legend_handles_labels()[0]]}
        fig.savefig(files[-1], dpi=110, metadata={"Title": ax.get_title(), "Description": json.dumps(shown)})
        plt.close(fig)

    def per_layout(value, ideal, ylabel: str, title: str, **axes):
        fig, ax = plt.subplots(figsize=(6, 4))
        for layout in layouts:
            sel = [r for r in rows if r.layout == layout]
            ax.plot([getattr(r, scale) for r in sel], [value(r) for r in sel], "o-", label=layout)
            for r in sel:          # processes x threads: a point is only fair beside others on the same cores
                ax.annotate(r.shape, (getattr(r, scale), value(r)), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        ax.plot(xs, [ideal(x) for x in xs], "k--", label="ideal")
        ax.set(xlabel=scale, ylabel=ylabel, title=title, xticks=xs, **axes)
        ax.legend()
        ax.grid(alpha=0.3)
        return fig

    save(per_layout(lambda r: r.samples_per_s, lambda x: base.samples_per_s * x / getattr(base, scale),
                    "training samples/s", "Throughput"), "throughput")
    save(per_layout(lambda r: 100 * r.efficiency, lambda x: 100, "parallel efficiency [%]",
                    "Efficiency vs the smallest run", ylim=(0, 120)), "efficiency")

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    labels = [f"{r.layout} {r.shape}\neval {100 * r.eval_share:.0f}% of train" for r in rows]
    bottom = [0.0] * len(rows)
    # Untimed staging sits inside init: draw it once, as staging.
    init = [r.init_s - (0.0 if r.staging_timed else r.staging_s) for r in rows]
    timed = [(r.time_to_train_min or 0) * 60 for r in rows]
    other = [max(0.0, t - (r.staging_s if r.staging_timed else 0.0) - r.train_s - r.eval_s)
             for t, r in zip(timed, rows)]
    for name, values in (("init (untimed)", init), ("staging", [r.staging_s for r in rows]),
                         ("train", [r.train_s for r in rows]), ("eval", [r.eval_s for r in rows]),
                         ("other", other)):
        ax.bar(labels, values, bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set(ylabel="seconds", title="Time-to-train breakdown (eval as a share of training time)")
    ax.legend(fontsize=8)
    save(fig, "breakdown")
    return files


COLUMNS = [("layout", "layout"), ("nodes", "nodes"), ("processes", "processes"), ("threads", "threads/process"),
           ("global_batch", "global batch"), ("samples_per_s", "samples/s"), ("speedup", "speedup"),
           ("efficiency", "efficiency"), ("time_to_train_min", "time to train [min]"), ("epochs", "epochs"),
           ("eval_share", "eval/train"), ("status", "status")]


def _cell(row: ReportRow, key: str) -> str:
    value = getattr(row, key)
    if key in ("efficiency", "eval_share"):
        return f"{100 * value:.0f}%"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def eval_warnings(rows: list[ReportRow]) -> list[str]:
    """One line per run whose evaluation took more than its share."""
    return [f"Warning: {Path(r.log).name} spent {100 * r.eval_share:.0f}% of its training time evaluating "
            f"(more than {100 * EVAL_SHARE_WARNING:.0f}%): time to train pays for it; look at the validation input"
            for r in rows if r.eval_share > EVAL_SHARE_WARNING]


PLOTS = ("throughput", "efficiency", "breakdown")
REPORT_FILES = ("report.csv", "report.md", "report.html", *(f"{name}.png" for name in PLOTS))


def write_report(paths: list[str | Path], out: str | Path, notes: list[str] = ()) -> dict[str, Path]:
    """Write report.csv, report.md, report.html and the PNG plots to ``out``;
    ``notes`` are flagged beside the warnings (runs outside reference values)."""
    rows, scale = collect_rows(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    pngs = _plots(rows, scale, out)

    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    lines = [f"# Throughput scaling report ({rows[0].benchmark})", "",
             f"Speedup and efficiency are against the smallest run ({rows[0].layout}, "
             f"{getattr(rows[0], scale)} {scale}); samples/s come from epoch timings (eval and staging excluded).",
             "", header, "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r, key) for key, _ in COLUMNS) + " |" for r in rows]
    warnings = eval_warnings(rows) + list(notes)
    lines += [""] + warnings + ([""] if warnings else []) + [f"![{p.stem}]({p.name})" for p in pngs]
    (out / "report.md").write_text("\n".join(lines) + "\n")

    table = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(r, k))}</td>" for k, _ in COLUMNS) + "</tr>"
                    for r in rows)
    images = "".join(f'<img alt="{p.stem}" src="data:image/png;base64,'
                     f'{base64.b64encode(p.read_bytes()).decode()}">' for p in pngs)
    (out / "report.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>mlperf-hpc scaling report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}img{max-width:48%;margin:1%}</style>"
        f"</head><body><h1>Throughput scaling report ({html.escape(rows[0].benchmark)})</h1>"
        f"<p>{html.escape(lines[2])}</p><table><tr>"
        + "".join(f"<th>{html.escape(t)}</th>" for _, t in COLUMNS)
        + f"</tr>{table}</table>" + "".join(f"<p><b>{html.escape(w)}</b></p>" for w in warnings)
        + f"{images}</body></html>")
    return {"csv": out / "report.csv", "markdown": out / "report.md", "html": out / "report.html",
            **{p.stem: p for p in pngs}}
