"""Progress lines for long work: steps, samples/s and ETA, from rank 0 only."""
from __future__ import annotations

import sys
import time


class Progress:
    """Prints at most one line every ``interval`` seconds, plus epoch summaries."""

    def __init__(self, label: str, enabled: bool = True, interval: float = 5.0):
        self.label = label
        self.enabled = enabled
        self.interval = interval
        self._last = 0.0

    def step(self, epoch: int, max_epochs: int, step: int, steps: int, samples: int, elapsed: float) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.interval or step == steps:
            return
        self._last = now
        rate = samples / elapsed if elapsed > 0 else 0.0
        eta = (steps - step) * (elapsed / step) if step else 0.0
        self.say(f"epoch {epoch}/{max_epochs} step {step}/{steps}  {rate:.1f} samples/s  epoch ETA {eta:.0f}s")

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"[{self.label}] {message}", file=sys.stderr, flush=True)
