"""The configuration reference cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from otel_corr._settings import Options

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "configuration.md").read_text()
NAME = re.compile(r"\bOTEL_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def _code_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "otel_corr").rglob("*.py"):
        names |= set(NAME.findall(path.read_text()))
    return {n for n in names if not n.endswith("_")}


def test_every_variable_the_code_reads_is_documented() -> None:
    """Each OTEL_* / OTEL_CORR_* name in otel_corr/ appears in docs/configuration.md."""
    missing = sorted(n for n in _code_names() if n not in DOC)
    assert missing == []


def test_every_documented_otel_corr_variable_exists() -> None:
    """No OTEL_CORR_* variable is documented that the code does not read."""
    documented = {n for n in NAME.findall(DOC) if n.startswith("OTEL_CORR_")}
    assert sorted(documented - _code_names()) == []


def test_every_instrument_argument_is_documented() -> None:
    """Each keyword argument of instrument() has a row."""
    assert [a for a in Options.__annotations__ if f"| `{a}` |" not in DOC] == []
