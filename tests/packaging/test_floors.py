"""The dependency floors in pyproject.toml carry the security fixes, and what is installed meets
them.

The floors are read from pyproject.toml itself (the base dependencies and every extra), so a
floor lowered there, or an environment left on an old release, fails here.
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

# The first releases that carry the fixes the comments in pyproject.toml name.
SECURITY_FLOORS = {
    "requests": "2.33.0",
    "urllib3": "2.7.0",
    "cryptography": "50.0.0",
    "pysaml2": "7.5.5",
    "flask": "3.1.3",
    "django": "5.2.20",
}


def requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    out = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        out += [Requirement(r) for r in extra if not r.startswith("qlikauth[")]
    return out


def floor_of(req: Requirement) -> Version | None:
    floors = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(floors) if floors else None


def test_every_security_floor_is_at_least_the_fixed_release():
    by_name: dict[str, list[Requirement]] = {}
    for req in requirements():
        by_name.setdefault(req.name.lower(), []).append(req)
    for name, fixed in SECURITY_FLOORS.items():
        assert name in by_name, f"{name} is not a dependency in pyproject.toml"
        for req in by_name[name]:
            floor = floor_of(req)
            assert floor is not None and floor >= Version(fixed), (
                f"{req}: the floor must be >= {fixed}"
            )


def test_mkdocs_stays_below_2():
    (req,) = [r for r in requirements() if r.name.lower() == "mkdocs"]
    assert not req.specifier.contains("2.0.0"), f"{req}: mkdocs 2.0 drops plugins and mkdocs.yml"
    assert req.specifier.contains("1.6.1")


@pytest.mark.parametrize("req", requirements(), ids=str)
def test_installed_versions_meet_the_floors(req: Requirement):
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        pytest.skip(f"{req} does not apply here")
    try:
        installed = version(req.name)
    except PackageNotFoundError:
        # The dev environment installs every extra (pip install -e '.[dev,all]').
        pytest.fail(f"{req.name} is not installed: pip install -e '.[dev,all]'")
    assert req.specifier.contains(installed, prereleases=True), (
        f"{req.name} {installed} is installed but pyproject.toml asks for {req}: "
        f"pip install -U '{req}'"
    )
