"""The engine websocket of a client-managed Qlik Sense virtual proxy: its CSRF token and its URL.

Since November 2024 Qlik Sense Enterprise on Windows guards the engine websocket against
cross-site websocket hijacking: a client first asks ``GET /{prefix}/qps/csrftoken`` with the
proxy session cookie (204, the token in the ``qlik-csrf-token`` header), then opens
``wss://host/{prefix}/app/{app id}?qlik-csrf-token=<token>`` with the same cookie and an
``Origin`` on the virtual proxy's host allow list; without them Qlik refuses the upgrade with
403 ("Cross-Site Websocket Hijacking attack prevention check failed"). Browser mashups on
another origin also need the virtual proxy's *additional response headers*
(``Access-Control-Allow-Origin``, ``Access-Control-Allow-Credentials: true``,
``Access-Control-Expose-Headers: qlik-csrf-token``) to read the token.

>>> engine_websocket_url("https://qlik.example.com/portal/", "6a1b c", "t/k")
'wss://qlik.example.com/portal/app/6a1b%20c?qlik-csrf-token=t%2Fk'
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import requests

from .exceptions import ConfigurationError, QlikEndpointError

__all__ = ["CSRF_HEADER", "fetch_csrf_token", "engine_websocket_url"]

#: The header (answer of /qps/csrftoken) and query parameter (websocket URL) Qlik uses.
CSRF_HEADER = "qlik-csrf-token"


def _proxy_base(proxy_url: str) -> str:
    parts = urlsplit(proxy_url)
    if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            f"proxy_url {proxy_url!r} must be the virtual proxy's https URL, e.g. "
            "https://qlik.example.com/portal/."
        )
    return f"https://{parts.netloc}{parts.path.rstrip('/')}/"


def fetch_csrf_token(
    proxy_url: str,
    cookie_name: str,
    session_id: str,
    *,
    verify: str | bool = True,
    timeout: float = 10.0,
    session: requests.Session | None = None,
) -> str:
    """The websocket CSRF token of proxy session ``session_id`` (``GET {proxy_url}qps/csrftoken``).

    ``proxy_url`` is the virtual proxy (``https://host/prefix/``), ``cookie_name`` its session
    cookie header name. ``verify`` is the CA bundle that signed the proxy's certificate (or
    True for the system store). Raises :class:`~qlikauth.exceptions.QlikEndpointError` when the
    proxy answers without a token (a release before November 2024 needs none).
    """
    if verify is False:
        raise ConfigurationError(
            "verify=False is refused: give the CA file that signed the proxy's certificate."
        )
    url = _proxy_base(proxy_url) + "qps/csrftoken"
    s = session
    if s is None:
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE or proxies from the environment must not decide
    try:
        resp = s.get(
            url,
            headers={"Cookie": f"{cookie_name}={session_id}"},
            verify=verify,
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise QlikEndpointError(f"cannot reach {url}: {type(exc).__name__}.", url=url) from None
    finally:
        if session is None:
            s.close()
    token = resp.headers.get(CSRF_HEADER)
    if resp.status_code in (200, 204) and token:
        return token
    if resp.status_code in (302, 401, 403):
        raise QlikEndpointError(
            f"{url} answered {resp.status_code}: the proxy session is not valid on this virtual "
            "proxy "
            "(signed out, timed out, or the cookie name is not its session cookie header name).",
            url=url,
        )
    raise QlikEndpointError(
        f"{url} answered {resp.status_code} without a {CSRF_HEADER} header (a Qlik Sense release "
        "before "
        "November 2024 needs no token: open the websocket without it).",
        url=url,
    )


def engine_websocket_url(proxy_url: str, app_id: str, csrf_token: str | None = None) -> str:
    """``wss://host/{prefix}/app/{app_id}`` with the CSRF token as ``qlik-csrf-token``
    (when given)."""
    base = "wss://" + _proxy_base(proxy_url).split("://", 1)[1]
    url = f"{base}app/{quote(app_id, safe='')}"
    return f"{url}?{CSRF_HEADER}={quote(csrf_token, safe='')}" if csrf_token else url
