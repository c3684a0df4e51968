"""Registries of the backends a system YAML names: schedulers and launchers.
A backend is one class with a ``name``, registered by decorator."""
from __future__ import annotations

from typing import Any

from core.errors import HarnessError


class Registry(dict):
    """Classes by their ``name``."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls: type) -> type:
        """Class decorator; two classes of one name are a programming error."""
        if cls.name in self:
            raise ValueError(f"two {self.kind}s are called {cls.name!r}: {self[cls.name].__name__} and {cls.__name__}")
        self[cls.name] = cls
        return cls

    def create(self, name: str) -> Any:
        """An instance of the class called ``name``, or a one-line refusal."""
        if name not in self:
            raise HarnessError(f"unknown {self.kind} '{name}': use one of {', '.join(sorted(self))}")
        return self[name]()
