"""Smoke run of the OIDC benchmark (``bench/bench_oidc.py --quick``) so it cannot rot.

No timing is checked: only that both figures were measured against the real provider, that a
warm cache made no JWKS fetch, and that every sign-in came back as the user who signed in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_oidc_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "oidc.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_oidc.py"),
            "--quick",
            "--storm-users",
            "200",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert "validation" in result, result  # a skipped run (no node) fails here
    v = result["validation"]
    assert v["ratio_qlikauth_vs_pyjwt"] > 0
    for c in v["contenders"].values():
        assert c["calls"] > 0 and c["per_s_median"] > 0
    assert result["jwks_fetches_during_validation"] == 0
    assert result["jwks_fetches_during_sign_ins"] == 0
    assert result["subjects_ok"] == result["sign_ins"] > 0
    assert "OIDC id_token validation" in proc.stdout
    storm = result[
        "storm"
    ]  # correctness, not speed: every user at the hub and the portal as themselves
    assert storm["completed"] == storm["users"] == 200, storm.get("first_errors")
    assert storm["mixups"] == 0
    alone = storm["provider_alone"]  # the provider's own cost, measured beside it
    assert alone["completed"] == 200 and alone["sign_ins_per_s"] > 0, alone["first_errors"]
