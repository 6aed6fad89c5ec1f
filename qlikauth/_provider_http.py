"""The HTTP channel to a Qlik endpoint that is not QPS: a virtual proxy, a Qlik Cloud tenant.

One :class:`requests.Session` per client, built in one place: TLS always verified (the
system trust store, or a CA bundle such as the site's ``root.pem``; ``verify=False`` is
refused), no proxies or ``.netrc`` from the environment (``trust_env`` off), no
redirects followed (a redirect from a token or login endpoint is an answer to report,
not a place to send credentials), connect and read timeouts on every call, and answers
read with a size cap. Errors become :class:`~qlikauth.exceptions.QlikEndpointError`
subclasses naming the endpoint, never the credentials sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from .exceptions import (
    ConfigurationError,
    QlikEndpointConnectionError,
    QlikEndpointError,
    QlikEndpointHTTPError,
)

__all__ = ["ProviderChannel", "ProviderResponse", "MAX_ANSWER_BYTES"]

#: Answers larger than this are refused (a token or user record is a few KiB).
MAX_ANSWER_BYTES = 1 << 20


class ProviderResponse:
    """What a caller reads of an answer: status, headers, cookies and the parsed body."""

    __slots__ = ("status_code", "headers", "cookies", "body", "url")

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        cookies: dict[str, str],
        body: bytes,
        url: str,
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.cookies = cookies
        self.body = body
        self.url = url

    def json(self) -> Any:
        """The body as JSON (a :class:`QlikEndpointError` when it is not)."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise QlikEndpointError(
                f"{self.url} answered {self.status_code} with a body that is not JSON.",
                url=self.url,
            ) from None


def _set_cookies(r: requests.Response) -> dict[str, str]:
    """name -> value of every Set-Cookie (parsed here: cookiejar policies drop some for IP
    hosts)."""
    out: dict[str, str] = {}
    try:
        lines = r.raw.headers.getlist("Set-Cookie")
    except AttributeError:
        lines = [r.headers["Set-Cookie"]] if "Set-Cookie" in r.headers else []
    for line in lines:
        name, sep, rest = line.partition("=")
        if sep and name.strip():
            out[name.strip()] = rest.split(";", 1)[0].strip()
    return out


def _check_verify(verify: bool | str | Path) -> bool | str:
    if verify is False:
        raise ConfigurationError(
            "verify=False is refused: TLS to Qlik is always verified. Pass the CA bundle that "
            "signed "
            "the server's certificate (for a client-managed site, the exported root.pem)."
        )
    if verify is True:
        return True
    path = Path(verify)
    if not path.is_file():
        raise ConfigurationError(
            f"the CA bundle {str(path)!r} does not exist (verify= must be True or a file)."
        )
    return str(path)


def _errors_detail(resp: ProviderResponse) -> tuple[str, list[dict[str, Any]]]:
    try:
        data = json.loads(resp.body)
    except ValueError:
        return "", []
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return "", []
    parts = []
    clean: list[dict[str, Any]] = []
    for e in errors[:5]:
        if isinstance(e, dict):
            clean.append({k: e.get(k) for k in ("title", "detail", "code", "status") if k in e})
            parts.append(" ".join(str(e[k]) for k in ("code", "title", "detail") if e.get(k)))
    return "; ".join(parts)[:500], clean


class ProviderChannel:
    """A verified, proxy-free, redirect-free HTTP channel to one Qlik endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str | Path = True,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
        pool_maxsize: int = 10,
        what: str = "Qlik",
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith("https://"):
            raise ConfigurationError(
                f"{what} URL {base_url!r} must start with https:// (credentials travel on it)."
            )
        self.base_url = base_url.rstrip("/")
        self.what = what
        self.timeout = (
            connect_timeout if connect_timeout is not None else min(timeout, 5.0),
            timeout,
        )
        session = requests.Session()
        session.trust_env = False
        session.verify = _check_verify(verify)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", HTTPAdapter(max_retries=0))
        self.session = session

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> ProviderResponse:
        """Send one request; answer the response, or raise naming the endpoint (never the
        secrets)."""
        url = self.base_url + path
        try:
            r = self.session.request(
                method,
                url,
                json=json_body,
                headers=dict(headers or {}),
                params=params,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
        except requests.exceptions.SSLError as exc:
            raise QlikEndpointConnectionError(
                f"TLS to {self.what} at {self.base_url} failed: the server's certificate is not "
                "trusted "
                "or not for this host name. Pass verify= the CA bundle that signed it.",
                url=url,
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise QlikEndpointConnectionError(
                f"{self.what} at {self.base_url} did not answer within "
                f"{self.timeout[1]} s ({method} {path}).",
                url=url,
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise QlikEndpointConnectionError(
                f"could not reach {self.what} at {self.base_url} "
                f"({method} {path}): {type(exc).__name__}.",
                url=url,
            ) from exc
        except OSError as exc:
            # requests raises a bare OSError when the CA bundle given as verify= has gone away.
            raise QlikEndpointConnectionError(
                f"TLS to {self.what} at {self.base_url} cannot be set up ({method} {path}): the CA "
                "bundle "
                "given as verify= cannot be read.",
                url=url,
            ) from exc
        try:
            body = r.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
        except Exception as exc:
            raise QlikEndpointConnectionError(
                f"{self.what} at {self.base_url} broke the answer to {method} {path}.", url=url
            ) from exc
        finally:
            r.close()
        if len(body) > MAX_ANSWER_BYTES:
            raise QlikEndpointError(
                f"{self.what} answered {method} {path} with more than {MAX_ANSWER_BYTES} bytes.",
                url=url,
            )
        resp = ProviderResponse(r.status_code, r.headers, _set_cookies(r), body, url)
        if r.status_code not in expect:
            detail, errors = _errors_detail(resp)
            hint = ""
            if 300 <= r.status_code < 400:
                hint = (
                    " (a redirect: check the URL; qlikauth never follows redirects with "
                    "credentials)"
                )
            raise QlikEndpointHTTPError(
                f"{self.what} answered {r.status_code} to {method} {path}{hint}"
                + (f": {detail}" if detail else "."),
                status_code=r.status_code,
                errors=errors,
                url=url,
            )
        return resp

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()
