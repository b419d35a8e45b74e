"""Check that the lock files agree with pyproject.toml (run by .ci/run after installing).

Two checks per lock: its recorded digest of the pyproject requirement lists it was made from
equals the digest of today's lists (so a changed pyproject.toml without `.ci/lock` fails),
and every requirement in those lists is pinned in the lock at a version its specifier allows.
`--stamp` (used by `.ci/lock`) writes the digests instead of checking them.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOCKS = {"requirements.lock": (), "requirements-dev.lock": ("test", "dev")}
STAMP = "# pyproject-requirements-sha256: "
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def requirements(extras: tuple[str, ...]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return sorted(found)


def digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def check(name: str, extras: tuple[str, ...]) -> list[str]:
    text = (ROOT / name).read_text()
    wanted = requirements(extras)
    problems = []
    recorded = [line[len(STAMP) :] for line in text.splitlines() if line.startswith(STAMP)]
    if recorded != [digest(wanted)]:
        problems.append(f"{name} was not made from today's pyproject.toml: run .ci/lock")
    pinned = pins(text)
    for raw in wanted:
        requirement = Requirement(raw)
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{name}: {requirement.name} is not pinned")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{name}: {requirement.name}=={version} does not satisfy {raw}")
    return problems


def stamp(name: str, extras: tuple[str, ...]) -> None:
    path = ROOT / name
    lines = [line for line in path.read_text().splitlines() if not line.startswith(STAMP)]
    lines.append(STAMP + digest(requirements(extras)))
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    if sys.argv[1:] == ["--stamp"]:
        for name, extras in LOCKS.items():
            stamp(name, extras)
        return 0
    problems = [p for name, extras in LOCKS.items() for p in check(name, extras)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print("lock files agree with pyproject.toml" if not problems else "lock check failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
