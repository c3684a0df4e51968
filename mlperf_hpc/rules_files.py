"""Log values that name the official checker's rules files, checked before
any official tool reads the log.

The official compliance checker follows a log's own values to more rules:
``submission_division`` 'closed' makes it load ``hpc_3.0.0/closed_common.yaml``
(``enqueue_config('hpc_3.0.0/{}_common.yaml'.format(v['value']))``), and it
``exec``s the code blocks (BEGIN, PRE, POST) of every rules file it loads.
It runs the POST code even when the value fails its CHECK, so a log whose
division is ``../../../../tmp/x`` makes the checker execute ``/tmp/x_common.yaml``:
whoever wrote the log runs code as whoever checks it. The result summarizer
and the package checker call the checker on every log they see, so a log is
safe for any official tool only once every such value is one the ruleset
itself allows.

Which keys name files is read from the ruleset's own YAML files (any key
record whose PRE or POST code passes the log's value to ``enqueue_config``),
and so are the values allowed (the list its CHECK tests ``v['value']``
against).
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from mlperf_logging.compliance_checker import mlp_compliance

# The value a key record's code reads, in either quoting.
_VALUE = re.compile(r"""v\[\s*['"]value['"]\s*\]""")
# The value formatted into the rules file's name.
_FORMATTED = re.compile(r"""\.format\(\s*v\[\s*['"]value['"]\s*\]""")
# CHECKs naming the allowed values:  v['value'] in [...]  or  v['value'] == '...'
_ALLOWED_LIST = re.compile(r"""v\[\s*['"]value['"]\s*\]\s+in\s+(\[[^\]]*\])""")
_ALLOWED_ONE = re.compile(r"""v\[\s*['"]value['"]\s*\]\s*==\s*('[^']*'|"[^"]*")""")
# A value that only decides whether a fixed rules file is loaded (opt_name
# 'LAMB') must still not look like a path.
_PLAIN = re.compile(r"^[A-Za-z0-9_+-]+$")


def ruleset_folder(ruleset: str) -> Path:
    return Path(mlp_compliance.__file__).parent / f"hpc_{ruleset}"


def _allowed_values(check: Any) -> set[str]:
    values: set[str] = set()
    for text in check if isinstance(check, list) else [check]:
        literals = _ALLOWED_LIST.findall(str(text or "")) + [f"[{one}]" for one in _ALLOWED_ONE.findall(str(text or ""))]
        for literal in literals:
            try:
                values |= {v for v in ast.literal_eval(literal) if isinstance(v, str)}
            except (ValueError, SyntaxError):
                pass
    return values


def _key_records(ruleset: str) -> list[dict]:
    records = []
    for path in sorted(ruleset_folder(ruleset).glob("*.yaml")):
        for item in yaml.safe_load(path.read_text()) or []:
            record = item.get("KEY") if isinstance(item, dict) else None
            if isinstance(record, dict) and "NAME" in record:
                records.append(record)
    return records


@lru_cache(maxsize=None)
def file_naming_keys(ruleset: str) -> dict[str, frozenset[str]]:
    """Each key whose value some rules file of ``ruleset`` passes on to
    ``enqueue_config``. A key whose value is formatted into the file's name
    maps to every value the ruleset's CHECKs of it allow (over all its
    files); a key whose value only decides whether a fixed file is loaded
    maps to an empty set (its value need only be a plain word)."""
    records = _key_records(ruleset)
    keys: dict[str, bool] = {}
    for record in records:
        code = " ".join(str(record.get(part) or "") for part in ("PRE", "POST"))
        if "enqueue_config" in code and _VALUE.search(code):
            keys[record["NAME"]] = keys.get(record["NAME"], False) or bool(_FORMATTED.search(code))
    allowed: dict[str, set[str]] = {key: set() for key in keys}
    for record in records:
        if keys.get(record["NAME"]):
            allowed[record["NAME"]] |= _allowed_values(record.get("CHECK"))
    return {key: frozenset(values) for key, values in allowed.items()}


def _shown(value: Any) -> str:
    """A value short enough for one line, its start and its end kept."""
    text = str(value)
    return text if len(text) <= 80 else f"{text[:30]}...{text[-40:]}"


def unsafe_values(values_of: dict[str, list[Any]], ruleset: str) -> list[str]:
    """Why the official tools must not read a log whose every value of each
    key is ``values_of[key]``: one reason per key holding a value that could
    name a rules file outside the ruleset's own."""
    reasons = []
    for key, allowed in sorted(file_naming_keys(ruleset).items()):
        for value in values_of.get(key, []):
            ok = isinstance(value, str) and (value in allowed if allowed else bool(_PLAIN.match(value)))
            if not ok:
                expected = f"one of {', '.join(sorted(allowed))}" if allowed else "a plain word"
                reasons.append(f"{key} {_shown(value)!r} is not {expected}: the official checker would load "
                               f"rules named after it, so no official tool was run on this log")
                break
    return reasons
