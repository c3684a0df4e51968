"""What the official RCP checker will say about a global batch size, asked
before the runs: whether a reference convergence point (RCP) exists or can
be interpolated, the epochs it expects, and when a bypass would be needed.

It asks the official ``RCP_Checker`` the same questions its
``check_directory`` asks of a finished submission (the pruned RCPs, the
RCP at that batch size or the interpolation between its neighbours, the
minimum acceptable mean), so the answer is the checker's own.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlperf_logging.rcp_checker import rcp_checker

from core.config import HPC_RULESET
from core.errors import HarnessError

PRUNED = "pruned_rcps"          # what the package checker and the summarizer compare against


@dataclass
class RcpOutlook:
    benchmark: str
    global_batch: int
    ruleset: str
    kind: str                   # found, interpolated, below (smaller than every RCP), missing
    mean_epochs: float | None   # the reference's olympic mean
    epoch_range: tuple[float, float] | None
    min_mean_epochs: float | None  # the fastest submission mean the checker accepts
    references: str             # which RCPs the answer comes from
    runs: int                   # runs a submission needs

    def lines(self) -> list[str]:
        head = f"rcp {self.benchmark} global batch {self.global_batch} (hpc {self.ruleset}): "
        if self.kind == "missing":
            return [head + f"no RCP at or above this batch size ({self.references}): the RCP check fails; a run "
                           f"needs --rcp-bypass (and review) or an RCP submitted at batch {self.global_batch}"]
        low, high = self.epoch_range
        out = [head + {"found": f"RCP found ({self.references})",
                       "interpolated": f"no RCP at this batch size: interpolated between {self.references}",
                       "below": f"no RCP at this batch size, which is below every RCP: compared with "
                                f"{self.references}"}[self.kind],
               f"expected epochs to converge: mean {self.mean_epochs:.2f} (reference runs {low:g}-{high:g})",
               f"accepted: the olympic mean of the {self.runs} runs >= {self.min_mean_epochs:.2f} epochs; a faster "
               f"mean fails the RCP check and needs --rcp-bypass (and review)",
               f"a mean between {self.min_mean_epochs:.2f} and {self.mean_epochs:.2f} epochs passes, and the score is "
               f"scaled by {self.mean_epochs:.2f} / mean (the RCP scaling factor)"]
        return out


def rcp_outlook(benchmark: str, global_batch: int, ruleset: str = HPC_RULESET) -> RcpOutlook:
    try:
        checker = rcp_checker.RCP_Checker("hpc", ruleset, benchmark, False)
    except (KeyError, FileNotFoundError):
        raise HarnessError(f"the official RCP checker has no hpc {ruleset} RCPs for '{benchmark}'") from None
    runs = rcp_checker.submission_runs["hpc"][benchmark]
    record = checker._find_rcp(global_batch, PRUNED)
    low = checker._find_top_min_rcp(global_batch, PRUNED)
    high = checker._find_bottom_max_rcp(global_batch, PRUNED)

    def spread(*records: dict) -> tuple[float, float]:
        epochs = [e for r in records for e in r["Epochs to converge"]]
        return min(epochs), max(epochs)

    if record is not None:
        kind, refs, used, span = "found", f"batch {record['BS']}, {len(record['Epochs to converge'])} runs", record, \
            spread(record)
    elif low is not None and high is not None:
        _, used = checker._create_interp_rcp(global_batch, low, high)
        kind, refs, span = "interpolated", f"the RCPs at batch {low['BS']} and {high['BS']}", spread(low, high)
    elif low is None and high is not None:
        used = checker._find_min_rcp(PRUNED)
        kind, refs, span = "below", f"the smallest RCP, batch {used['BS']}", spread(used)
    else:
        largest = max(r["BS"] for r in checker._get_rcp_data(PRUNED).values())
        return RcpOutlook(benchmark, global_batch, ruleset, "missing", None, None, None,
                          f"the largest is batch {largest}", runs)
    return RcpOutlook(benchmark, global_batch, ruleset, kind, float(used["RCP Mean"]), span,
                      float(used["Min Epochs"]), refs, runs)
