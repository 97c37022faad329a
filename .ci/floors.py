"""Print ``name==floor`` for every runtime dependency pyproject.toml declares (core and every extra but test/bench).

The lowest-versions CI job installs with these as constraints, so each declared floor is the version tested:
a floor that cannot install beside the others, or breaks the suite, fails CI instead of a user's deploy.
Test-only tools (the test and bench extras) are left to resolve to the newest version that fits.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_SKIP_EXTRAS = {"test", "bench"}
_REQ = re.compile(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*$")


def main() -> int:
    project = tomllib.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in _SKIP_EXTRAS:
            requirements += [r for r in reqs if not r.startswith(project["name"])]
    floors: dict[str, str] = {}
    for req in requirements:
        match = _REQ.match(req)
        if match is None:
            print(f"floors.py: no '>=' floor in {req!r}", file=sys.stderr)
            return 1
        name, version = match.group(1).lower(), match.group(3)
        if floors.setdefault(name, version) != version:
            print(f"floors.py: {name} has two floors ({floors[name]}, {version})", file=sys.stderr)
            return 1
    for name, version in sorted(floors.items()):
        print(f"{name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
