"""scripts/bootstrap.sh and scripts/demo.sh: the demo needs no npm, and nothing stops the
machine's own services."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sandbox(tmp_path: Path) -> Path:
    """A copy of the scripts with an installed-looking .venv and one npm test peer."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text("#!/bin/sh\nexit 0\n")
    (venv / "python").chmod(0o755)
    stamp = tmp_path / ".venv" / ".qlikauth-installed"
    stamp.touch()
    os.utime(tmp_path / "pyproject.toml", (1, 1))  # older than the stamp: nothing to install
    peer = tmp_path / "tests" / "peers" / "somepeer"
    peer.mkdir(parents=True)
    (peer / "package-lock.json").write_text("{}")
    return tmp_path


def bootstrap(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PATH without npm (and without sudo or service): what a demo machine may well look like.
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("dirname", "dpkg-query", "grep", "id", "touch"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return subprocess.run(
        ["/bin/bash", str(root / "scripts" / "bootstrap.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(root)},
    )


def test_the_demo_bootstrap_needs_no_npm(tmp_path):
    done = bootstrap(sandbox(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "npm" not in done.stdout + done.stderr


def test_the_test_bootstrap_installs_the_npm_peers(tmp_path):
    done = bootstrap(sandbox(tmp_path), "--test")
    assert done.returncode == 1
    assert "npm is needed for the test peers" in done.stderr


def test_unknown_options_are_refused(tmp_path):
    done = bootstrap(sandbox(tmp_path), "--sytem")
    assert done.returncode == 2 and "usage" in done.stderr


def test_no_script_stops_or_starts_services():
    for script in (ROOT / "scripts").glob("*.sh"):
        text = script.read_text()
        for word in ("service ", "systemctl", "invoke-rc.d"):
            assert word not in text, (
                f"{script.name} manages the machine's services ({word.strip()})"
            )


def test_demo_script_bootstraps_without_test_options():
    text = (ROOT / "scripts" / "demo.sh").read_text()
    assert "bash scripts/bootstrap.sh\n" in text
    assert "--test" not in text and "--system" not in text
