"""Helpers every benchmark shares: tables, versions, the checkout being measured, the workers' environment."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain fixed-width table: first column left-aligned, the others right-aligned."""
    rows = [list(headers), *map(list, rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def package_versions(packages: Iterable[str]) -> str:
    parts = []
    for name in packages:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def source_state() -> str:
    """The checkout being measured: commit and whether otel_corr/ has uncommitted changes."""
    try:
        git = ["git", "-C", str(REPO_DIR)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "otel_corr"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "source: unknown (no git)"
    return f"source: {commit}" + (" + uncommitted changes in otel_corr/" if dirty else "")


def child_env() -> dict[str, str]:
    """The environment for workers and servers: this checkout first, no OTEL_* influence."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FASTAPI_OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), env.get("PYTHONPATH", "")) if p)
    return env


def worker_json(cmd: Sequence[str], env: dict[str, str], timeout: float, label: str) -> dict[str, Any]:
    """Run one benchmark worker process and return the JSON object on the last line of its output."""
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker {label} failed (exit {proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
