"""SAML fixtures: the local pysaml2 IdP (unserved, in-process), a strict SP in front of it, keys."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

try:
    import saml2  # noqa: F401
except ImportError:  # pragma: no cover - the saml extra is part of [all]
    if os.environ.get("QLIKAUTH_REQUIRE_ALL"):
        raise
    pytest.skip(
        "the saml extra is not installed: pip install 'qlikauth[saml]'", allow_module_level=True
    )

from qlikauth.bridges.saml import SamlAssertion, SamlServiceProvider, SamlSettings  # noqa: E402
from qlikauth.emulator.saml_idp import SamlIdp, write_self_signed  # noqa: E402

SP_BASE = "https://portal.example.com/qlik/saml/"
SP_ENTITY = SP_BASE + "metadata"
ACS = SP_BASE + "acs"
SLO = SP_BASE + "slo"


@pytest.fixture(scope="session")
def saml_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Key pairs: the IdP's, the SP's, and an attacker's ("evil"), as (cert, key)."""
    d = tmp_path_factory.mktemp("saml-keys")
    return {name: write_self_signed(d / name, name) for name in ("idp", "sp", "evil")}


@pytest.fixture
def idp(saml_keys: dict[str, tuple[Path, Path]]) -> Iterator[SamlIdp]:
    """The local pysaml2 IdP with the session's IdP key (not served: tests call it directly)."""
    i = SamlIdp(key_dir=saml_keys["idp"][0].parent)
    yield i
    i.stop()


@dataclass
class Flow:
    """One SP + IdP pair and the browser token of "this browser"."""

    sp: SamlServiceProvider
    idp: SamlIdp
    token: str = ""

    def start(self, relay_state: str | None = "/portal/home", token: str | None = None) -> Any:
        start = self.sp.login(relay_state, token or self.token or None)
        if start.cookie is not None:
            self.token = start.cookie.value
        return self.idp.parse_authn_request(start.redirect.location)

    def response(self, user: str = "alice", **kwargs: Any) -> dict[str, str]:
        """A signed response from the IdP to a fresh AuthnRequest of this browser."""
        info = self.start()
        xml = self.idp.response_xml(
            user,
            in_response_to=info.id,
            acs_url=info.acs_url,
            sp_entity_id=info.sp_entity_id,
            **kwargs,
        )
        return self.idp.post_form(xml, info.relay_state)

    def acs(self, form: dict[str, str], token: str | None = None) -> SamlAssertion:
        return self.sp.acs(form, self.token if token is None else token)


@pytest.fixture
def make_flow(idp: SamlIdp, saml_keys: dict[str, tuple[Path, Path]]) -> Callable[..., Flow]:
    """``make_flow(**settings)``: a strict SP (sensible defaults) trusted by the IdP."""

    def make(**overrides: Any) -> Flow:
        values: dict[str, Any] = {
            "sp_entity_id": SP_ENTITY,
            "acs_url": ACS,
            "slo_url": SLO,
            "idp_metadata": idp.metadata(),
        }
        values.update(overrides)
        sp = SamlServiceProvider(SamlSettings(**values))
        idp.add_sp_metadata(sp.metadata())
        return Flow(sp, idp)

    return make


@pytest.fixture
def flow(make_flow: Callable[..., Flow]) -> Flow:
    return make_flow()


# -- the samlify IdP (Node), a SAML stack other than the one the SP is built on ------------
PEER = Path(__file__).resolve().parents[1] / "peers" / "saml-idp"


class SamlifyIdp:
    """The Node IdP of tests/peers/saml-idp (samlify + xml-crypto), driven over its JSON API."""

    def __init__(self, proc: Any, port: int) -> None:
        self.proc, self.port = proc, port
        self.base_url = f"http://127.0.0.1:{port}"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import json
        import urllib.request

        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback peer
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"samlify IdP {path}: {exc.read().decode()}") from None

    def metadata(self) -> str:
        import urllib.request

        with urllib.request.urlopen(self.base_url + "/metadata", timeout=30) as resp:  # noqa: S310
            return resp.read().decode()

    def login(self, location: str, user: str) -> dict[str, Any]:
        return self._post("/login", {"location": location, "user": user})

    def logout(self, session_index: str) -> str:
        return str(self._post("/logout", {"sessionIndex": session_index})["url"])

    def slo(self, location: str) -> dict[str, Any]:
        return self._post("/slo", {"location": location})


@pytest.fixture
def samlify_factory(
    tmp_path: Path, saml_keys: dict[str, tuple[Path, Path]]
) -> Iterator[Callable[..., SamlifyIdp]]:
    """``start(sp_metadata_xml, users)`` runs the samlify IdP (needs node and ``npm ci`` in the peer
    dir)."""
    import json
    import shutil
    import subprocess

    from _support import skip_or_fail, stop_process

    if shutil.which("node") is None:
        skip_or_fail("node is not installed (Debian: nodejs); the samlify IdP needs it")
    if not (PEER / "node_modules" / "samlify").is_dir():
        skip_or_fail(
            f"the samlify peer is not installed: run scripts/bootstrap.sh --test (npm ci in {PEER})"
        )
    procs: list[Any] = []

    def start(sp_metadata: bytes | str, users: dict[str, Any], **extra: Any) -> SamlifyIdp:
        md = tmp_path / f"sp-{len(procs)}.xml"
        md.write_bytes(sp_metadata if isinstance(sp_metadata, bytes) else sp_metadata.encode())
        cert, key = saml_keys["idp"]
        cfg = tmp_path / f"samlify-{len(procs)}.json"
        cfg.write_text(
            json.dumps(
                {
                    "port": 0,
                    "key": str(key),
                    "cert": str(cert),
                    "sp_metadata": str(md),
                    "users": users,
                    **extra,
                }
            )
        )
        proc = subprocess.Popen(
            ["node", str(PEER / "idp.js"), str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        procs.append(proc)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("listening "):
            stop_process(proc, group=True, grace=5)
            raise RuntimeError(
                f"the samlify IdP did not start: {line}{proc.stdout.read() if proc.stdout else ''}"
            )
        return SamlifyIdp(proc, int(line.split()[1]))

    yield start
    for proc in procs:
        stop_process(proc, group=True, grace=5)
