"""The divergence guard: the signs that a run can no longer reach its
target, read after each epoch's evaluation.

A run that diverged costs a centre its whole epoch budget in node-hours
before it ends as "target missed". Three signs stop it early:

- a training loss or metric that is not finite;
- a dead network: the metric and the training loss unchanged over several
  epochs (saturated units give the same output whatever the input, as in a
  hybrid run whose val MAE stayed at 1.2335 for 11 epochs);
- a metric several times worse than the best so far, for several epochs in
  a row.

Every rank passes the same values (the metric and the loss reduced over all
replicas), so every rank comes to the same decision at the same epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from core.config import DivergenceConfig


@dataclass
class DivergenceGuard:
    config: DivergenceConfig
    lower_is_better: bool
    perfect: float = 0.0          # the best score the metric can take (1 for an IoU)
    history: list[tuple[float, float]] = field(default_factory=list)   # (metric, loss) per epoch

    def _distance(self, metric: float) -> float:
        """How far a metric is from perfect, whatever its direction."""
        return metric - self.perfect if self.lower_is_better else self.perfect - metric

    def sign(self, epoch: int, metric: float, loss: float) -> str | None:
        """Record one epoch; the reason to stop the run now, if any."""
        self.history.append((metric, loss))
        if not self.config.enabled:
            return None
        if not (math.isfinite(metric) and math.isfinite(loss)):
            return f"the training loss ({loss}) or the metric ({metric}) is not finite at epoch {epoch}"
        cfg = self.config
        recent = self.history[-cfg.stuck_epochs:]
        if len(recent) == cfg.stuck_epochs and all(
                _unchanged(a[i], b[i], cfg.stuck_tolerance) for a, b in zip(recent, recent[1:]) for i in (0, 1)):
            return (f"a dead network: the metric ({metric:.6g}) and the training loss ({loss:.6g}) have not moved "
                    f"for {cfg.stuck_epochs} epochs (epochs {epoch - cfg.stuck_epochs + 1}-{epoch})")
        best = min(self._distance(m) for m, _ in self.history)
        recent = [self._distance(m) for m, _ in self.history[-cfg.worse_epochs:]]
        if best > 0 and len(recent) == cfg.worse_epochs and len(self.history) > cfg.worse_epochs and all(
                d >= cfg.worse_factor * best for d in recent):
            return (f"the metric ({metric:.6g}) has been at least {cfg.worse_factor:g}x worse than the best so far "
                    f"for {cfg.worse_epochs} epochs (epochs {epoch - cfg.worse_epochs + 1}-{epoch})")
        return None


def _unchanged(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b), 1e-12)
