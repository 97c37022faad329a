"""What a new user reads first: README's two set-up commands, the Python version, and install lines
that work while otel-corr is not on PyPI."""

from __future__ import annotations

import re
import tomllib

from .conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The package's own messages (a missing extra) are install lines a user copies too.
SOURCES = sorted((ROOT / "otel_corr").rglob("*.py"))


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_has_exactly_the_two_set_up_commands() -> None:
    setup = (ROOT / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = [b.strip() for b in _bash_blocks(setup)]
    assert blocks == [
        'python3 -m venv .venv && .venv/bin/pip install -e ".[demo]" && .venv/bin/otel-corr demo',
        "bash .ci/run",
    ]


def test_readme_states_the_python_version_pyproject_requires() -> None:
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor.startswith(">=")
    assert f"Python {floor[2:]} or newer" in (ROOT / "README.md").read_text()


def test_no_doc_tells_a_user_to_pip_install_from_the_index() -> None:
    # `pip install 'otel-corr[x]'` fails until the package is published: every install line a user
    # can copy, in the docs or printed by otel-corr itself, installs from a clone (`-e .`/`-e '.[x]'`) instead.
    assert len(SOURCES) > 10
    offenders = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in DOCS + SOURCES
        for line in path.read_text().splitlines()
        if re.search(r"pip install\s+(-\S+\s+)*['\"]?otel-corr\b(?!-)", line) and "fails until" not in line
    ]
    assert offenders == []
