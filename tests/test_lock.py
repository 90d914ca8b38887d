"""The hashed lock files (requirements/*.lock) that `make` and CI install from:
every dependency pyproject.toml declares is pinned there at a version it allows,
and every pin carries its hashes."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {
    "run.lock": PROJECT["dependencies"] + PROJECT["optional-dependencies"]["embedded"],
    "dev.lock": PROJECT["dependencies"]
    + PROJECT["optional-dependencies"]["embedded"]
    + PROJECT["optional-dependencies"]["dev"],
    "mutants.lock": PROJECT["dependencies"]
    + PROJECT["optional-dependencies"]["embedded"]
    + PROJECT["optional-dependencies"]["dev"]
    + PROJECT["optional-dependencies"]["mutants"],
}


def pins(lock: str) -> dict[str, Version]:
    """Each pinned package's version; fails on a pin that carries no hash."""
    text = (ROOT / "requirements" / lock).read_text()
    found = {}
    # A pin is a `name==version [; marker] \` line and its indented `--hash=` lines.
    for block in re.split(r"\n(?=\S)", text):
        if block.startswith("#"):
            continue
        name, version = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", block).groups()
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", block), f"{lock}: {name} has no hash"
        found[canonicalize_name(name)] = Version(version)
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_declared_dependency_is_pinned_at_an_allowed_version(lock):
    pinned = pins(lock)
    for line in LOCKS[lock]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run `make lock`"
        )


def test_urllib3_is_past_the_unbounded_decompression_fix():
    # Receivers choose what urllib3 decompresses; before 2.6 a small answer could
    # expand without bound.
    for lock in LOCKS:
        assert pins(lock)["urllib3"] >= Version("2.6"), lock
