"""The distribution as pip sees it: the sdist builds from the tracked files, the wheel builds from
the sdist, and both hold what they should.

Built offline (``python -m build --no-isolation``: setuptools, wheel and build come from the dev
extra), from a copy of the files git tracks, so a file that only exists in a work tree cannot
make the test pass.
"""

from __future__ import annotations

import email.parser
import fnmatch
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIRS = {
    "qlikauth": ROOT / "qlikauth",
    "django_qlikauth": ROOT / "integrations" / "django_qlikauth",
    "flask_qlikauth": ROOT / "integrations" / "flask_qlikauth",
}

pytestmark = pytest.mark.slow


def tracked(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", *paths], cwd=ROOT, capture_output=True, check=True
    )
    return [p for p in out.stdout.decode().split("\0") if p]


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    src = tmp_path_factory.mktemp("src")
    for rel in tracked():
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / rel).read_bytes())
    out = tmp_path_factory.mktemp("dist")
    # Default build: the sdist first, then the wheel from the unpacked sdist.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def package_files() -> set[str]:
    """Every tracked file of the three packages, as its path inside the wheel."""
    files = set()
    for rel in tracked("qlikauth", "integrations"):
        files.add(rel.removeprefix("integrations/"))
    return files


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_wheel_holds_every_package_file_and_nothing_else(dists):
    names = wheel_names(dists["wheel"])
    expected = package_files()
    assert expected - names == set(), f"missing from the wheel: {sorted(expected - names)}"
    dist_info = {n for n in names if ".dist-info/" in n}
    extra = names - expected - dist_info
    assert extra == set(), f"unexpected files in the wheel: {sorted(extra)}"
    for typed in ("qlikauth/py.typed", "django_qlikauth/py.typed", "flask_qlikauth/py.typed"):
        assert typed in names
    assert {
        "qlikauth/web/templates/qlikauth/error.html",
        "qlikauth/web/templates/qlikauth/logout.html",
        "qlikauth/nginx/server.conf.tmpl",
    } <= names
    assert not any(n.startswith(("tests/", "examples/", "docs/", "bench/")) for n in names)


def test_wheel_metadata_says_what_exists(dists):
    with zipfile.ZipFile(dists["wheel"]) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
        entry_points = z.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    summary = meta["Summary"]
    for claim in ("SAML", "OIDC", "Qlik Cloud", "emulator"):  # what exists (see README)
        assert claim in summary, summary
    assert {"flask", "django", "all"} <= set(meta.get_all("Provides-Extra"))
    assert meta["License-Expression"] == "MIT"
    assert "[pytest11]\nqlikauth.pytest_plugin = qlikauth.pytest_plugin" in entry_points
    assert "[console_scripts]\nqlikauth = qlikauth.cli:main" in entry_points


def test_sdist_holds_the_sources_the_manual_and_the_examples(dists):
    with tarfile.open(dists["sdist"]) as t:
        members = t.getnames()
    top = members[0].split("/")[0]
    names = {m.removeprefix(top + "/") for m in members}
    wanted = set(tracked("qlikauth", "integrations", "docs", "examples")) | {
        "pyproject.toml",
        "README.md",
        "SECURITY.md",
        "LICENSE",
        "mkdocs.yml",
        "MANIFEST.in",
    }
    assert wanted - names == set(), f"missing from the sdist: {sorted(wanted - names)}"
    assert not any(
        n.startswith(("tests/", ".venv/", "site/", "test-artifacts/")) or "__pycache__" in n
        for n in names
    )
    assert not any(n.endswith(("_key.pem", ".pfx", ".p12")) for n in names)


def test_package_data_patterns_each_match_a_file():
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        base = PACKAGE_DIRS[package]
        files = [str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()]
        for pattern in patterns:
            glob = pattern.replace("**/", "*")
            assert any(fnmatch.fnmatch(f, glob) for f in files), (
                f"{package}: {pattern!r} matches nothing"
            )


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("flask_qlikauth", ("flask", "werkzeug"), "flask"),
        ("django_qlikauth", ("django",), "django"),
        ("qlikauth.emulator", ("httptools", "uvicorn", "uvloop", "wsproto"), "emulator"),
    ],
)
def test_import_without_the_extra_names_it(module, blocked, extra):
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError('No module named ' + repr(name), name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        f"    import {module}\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name, '|', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    name, _, message = out.stdout.strip().partition(" | ")
    assert name == blocked[0]
    assert f"pip install 'qlikauth[{extra}]'" in message


def test_the_emulator_runs_without_uvloop():
    """uvloop is optional (Windows has none): with it blocked, an emulated node serves a ticket."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'uvloop':\n"
        "            raise ModuleNotFoundError('No module named ' + repr(name), name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from qlikauth import QlikUser, QpsClient\n"
        "from qlikauth.emulator import Emulator, VirtualProxy\n"
        "from qlikauth.emulator.serving import BackgroundServer\n"
        "with Emulator(virtual_proxies=[VirtualProxy('portal')]) as emu:\n"
        "    qps = QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy='portal')\n"
        "    print(len(qps.request_ticket(QlikUser('ACME', 'jdoe')).ticket), 'uvloop' in "
        "sys.modules)\n"
        "    qps.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["16", "False"]


def test_uvloop_is_optional_with_uvicorns_own_marker():
    deps = PYPROJECT["project"]["optional-dependencies"]["emulator"]
    uvloop_dep = next(d for d in deps if d.startswith("uvloop"))
    assert (
        "sys_platform != 'win32'" in uvloop_dep
        and "platform_python_implementation != 'PyPy'" in uvloop_dep
    )


def test_site_is_ignored():
    out = subprocess.run(["git", "check-ignore", "-q", "site/index.html"], cwd=ROOT)
    assert out.returncode == 0, "mkdocs' output directory site/ is not in .gitignore"
