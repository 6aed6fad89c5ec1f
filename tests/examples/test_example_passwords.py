"""The example portals' password forms: throttled, bounded, and the same work for every name.

The portals run as their own processes (real HTTP; the Django portal over https); timings are
medians of several attempts, compared with each other, so a slow machine slows both alike.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from flask_portal.password_login import PasswordLogin, TooManyAttempts  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402


def _field(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no {name} field in the form"
    return m.group(1)


class FlaskForm:
    def __init__(self, base: str) -> None:
        self.base = base

    def attempt(self, name: str, password: str) -> tuple[requests.Response, float]:
        s = requests.Session()
        token = _field(s.get(f"{self.base}/login").text, "csrf")
        started = time.perf_counter()
        r = s.post(
            f"{self.base}/login",
            data={"csrf": token, "username": name, "password": password},
            allow_redirects=False,
        )
        return r, time.perf_counter() - started


class DjangoForm:
    def __init__(self, base: str, cafile: str) -> None:
        self.base, self.cafile = base, cafile

    def attempt(self, name: str, password: str) -> tuple[requests.Response, float]:
        s = requests.Session()
        s.trust_env = False
        s.verify = self.cafile
        token = _field(s.get(f"{self.base}/accounts/login/").text, "csrfmiddlewaretoken")
        started = time.perf_counter()
        r = s.post(
            f"{self.base}/accounts/login/",
            data={"csrfmiddlewaretoken": token, "username": name, "password": password},
            headers={"Referer": f"{self.base}/accounts/login/"},
            allow_redirects=False,
        )
        return r, time.perf_counter() - started


def _equal_work(form: Any) -> None:
    # Interleaved, so load on the machine affects both series alike.
    known, unknown = [], []
    for i in range(4):
        r, t = form.attempt("alice" if i % 2 else "bob", f"wrong-{i}")
        assert r.status_code in (200, 401)
        known.append(t)
        r, t = form.attempt(f"nobody-{i}", f"wrong-{i}")
        assert r.status_code in (200, 401)
        unknown.append(t)
    k, u = statistics.median(known), statistics.median(unknown)
    assert 0.5 < u / k < 2.0, f"unknown names {u * 1000:.1f} ms, known names {k * 1000:.1f} ms"


def _throttled(form: Any, ok_status: int, fail_status: int) -> None:
    for _ in range(5):
        assert form.attempt("alice", "guess")[0].status_code == fail_status
    r, _ = form.attempt("alice", "demo")  # the right password, but too many failures for alice
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 200
    assert "Too many failed sign-ins" in r.text
    assert form.attempt("nobody", "guess")[0].status_code == fail_status  # other names go on
    assert form.attempt("bob", "demo")[0].status_code == ok_status
    # From one address, many names: the address's own limit (20) stops the spray.
    codes = [form.attempt(f"spray-{i}", "guess")[0].status_code for i in range(16)]
    assert codes[:14] == [fail_status] * 14 and codes[-1] == 429
    assert form.attempt("carol", "demo")[0].status_code == 429


@pytest.mark.slow
def test_flask_portal_unknown_names_cost_what_wrong_passwords_cost(
    flask_portal: tuple[Any, str],
) -> None:
    _equal_work(FlaskForm(flask_portal[1]))


@pytest.mark.slow
def test_flask_portal_sign_in_is_throttled_per_user_and_per_address(
    flask_portal: tuple[Any, str],
) -> None:
    _throttled(FlaskForm(flask_portal[1]), ok_status=302, fail_status=401)


@pytest.mark.slow
def test_django_portal_unknown_names_cost_what_wrong_passwords_cost(
    django_portal: tuple[Any, str],
) -> None:
    emu, base = django_portal
    _equal_work(DjangoForm(base, str(Path(emu.certs_dir) / "root.pem")))


@pytest.mark.slow
def test_django_portal_sign_in_is_throttled_per_user_and_per_address(
    django_portal: tuple[Any, str],
) -> None:
    emu, base = django_portal
    _throttled(
        DjangoForm(base, str(Path(emu.certs_dir) / "root.pem")), ok_status=302, fail_status=200
    )


@pytest.mark.nginx
@pytest.mark.slow
def test_header_portal_sign_in_is_throttled() -> None:
    from _support import free_port_number, load_example

    mod = load_example(ROOT / "examples" / "header_proxy", "run.py", "header_proxy_run_passwords")
    with mod.HeaderProxyStack(
        portal_port=free_port_number(), nginx_port=free_port_number()
    ) as stack:
        _throttled(FlaskForm(stack.portal_url.rstrip("/")), ok_status=302, fail_status=401)


# -- the throttle itself (examples/flask_portal/password_login.py) ----------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {"alice": generate_password_hash("demo")}


def test_the_window_slides_and_a_success_clears_the_users_count(hashes: dict[str, str]) -> None:
    clock = Clock()
    login = PasswordLogin(hashes, per_user=3, per_address=100, window=60, clock=clock)
    for _ in range(2):
        assert login.verify("alice", "x", "10.0.0.1") is False
    assert login.verify("alice", "demo", "10.0.0.1") is True  # clears alice's count
    for _ in range(3):
        assert login.verify("alice", "x", "10.0.0.2") is False
    with pytest.raises(TooManyAttempts) as info:
        login.verify("alice", "demo", "10.0.0.3")
    assert 1 <= info.value.retry_after <= 60
    clock.now += 61  # the failures left the window
    assert login.verify("alice", "demo", "10.0.0.3") is True


def test_memory_is_bounded_whatever_names_are_sprayed() -> None:
    # a cheap hash for this test only: it checks the tables' bound, not the hashing work, and
    # 500 scrypt checks take minutes on a loaded two-core machine
    cheap = {"alice": generate_password_hash("demo", method="pbkdf2:sha256:1000")}
    clock = Clock()
    login = PasswordLogin(cheap, per_user=5, per_address=10**9, max_keys=50, clock=clock)
    for i in range(500):
        login.verify(f"user-{i}", "x", f"10.0.{i // 250}.{i % 250}")
    users, addresses = login.tracked()
    assert users <= 50 and addresses <= 50


def test_an_unknown_name_is_never_signed_in_even_with_the_dummys_password(
    hashes: dict[str, str],
) -> None:
    login = PasswordLogin(hashes)
    assert login.verify("mallory", "demo", "10.0.0.9") is False
    assert login.verify("", "", "10.0.0.9") is False
