"""What every command's arguments share: usage errors as the harness's one
line, and integer options with a declared valid range."""
from __future__ import annotations

import argparse
from typing import Callable

from core.config import Valid
from core.errors import HarnessError


class Parser(argparse.ArgumentParser):
    """Usage errors as the harness's one line, not argparse's usage block."""

    def error(self, message: str) -> None:
        raise HarnessError(message)


def int_in(valid: Valid) -> Callable[[str], int]:
    """An argparse type: an integer in ``valid``'s range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not valid.accepts(value):
            raise argparse.ArgumentTypeError(f"must be {valid}, got {value}")
        return value
    return parse
