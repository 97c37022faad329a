"""Run ``python -m otel_corr`` with its stdout on a pseudo-terminal, as a user's shell would."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_on_pty(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, bytes, bytes]:
    """``otel-corr ARGS`` with stdout on a pseudo-terminal: (status, the bytes the terminal got, stderr)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_corr", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=dict(env),
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower's last holder exited
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    status = proc.wait(30)
    err = proc.stderr.read() if proc.stderr else b""
    return status, out, err
