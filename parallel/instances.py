"""Weak scaling: several independent training instances in one job start
their timed runs together. Each instance's rank 0 marks itself ready in a
shared directory after its init phase and waits for the others; the
instance's own barrier then releases its ranks."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import HarnessError


@dataclass
class StartGate:
    directory: Path
    instance_id: int
    instances: int
    timeout_s: float = 1800.0

    def wait(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"ready.{self.instance_id}").touch()
        deadline = time.monotonic() + self.timeout_s
        while len(list(self.directory.glob("ready.*"))) < self.instances:
            if time.monotonic() > deadline:
                ready = len(list(self.directory.glob("ready.*")))
                raise HarnessError(f"only {ready} of {self.instances} instances reached the start gate "
                                   f"{self.directory} within {self.timeout_s:.0f}s: check the other instances' "
                                   f"output")
            time.sleep(0.1)
