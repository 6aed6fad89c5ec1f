"""nginx in front of a Qlik header virtual proxy: the hardened server block ``qlikauth
nginx-config`` writes.

A header virtual proxy believes whatever header reaches it, so it is only safe behind a
reverse proxy that sets the header itself. :func:`generate_server_block` writes that proxy
for nginx: TLS termination, ``auth_request`` to the portal's identity endpoint, the identity
header set (never appended) by nginx, websocket upgrades, the client's Host kept, the 2023
tunnelling and traversal request shapes refused, and verified TLS to the QPS node(s) with
sticky sessions. :func:`generate_nginx_conf` wraps it into a complete ``nginx.conf`` whose
pid, logs and temporary files live in one directory (``nginx -p DIR -c nginx.conf``).

Every parameter is validated before it is written: a value with a newline, ``;``, braces,
quotes, ``$`` or ``#`` could inject nginx directives, so it raises
:class:`~qlikauth.exceptions.ConfigurationError` instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal
from urllib.parse import urlsplit

from ..authenticators.header import check_header_name
from ..exceptions import ConfigurationError

__all__ = [
    "QpsNode",
    "generate_server_block",
    "generate_nginx_conf",
    "DEFAULT_IDENTITY_PATH",
    "DEFAULT_IDENTITY_CACHE",
    "DEFAULT_IDENTITY_CACHE_PARENT",
    "IDENTITY_RESPONSE_HEADER",
]

#: Where the integrations serve the identity endpoint for ``auth_request``.
DEFAULT_IDENTITY_PATH = "/qlik/header-auth"
#: The response header the identity endpoint answers with (``$upstream_http_x_qlik_header_value``).
IDENTITY_RESPONSE_HEADER = "X-Qlik-Header-Value"
#: Seconds nginx reuses the portal's identity answer for the same ``Cookie`` header by default:
#: the longest a copied, signed-out cookie header keeps its identity (docs/nginx.md).
DEFAULT_IDENTITY_CACHE = 5
#: Where the cache files go by default (nginx's own state directory on Debian, Ubuntu, RHEL and
#: Alpine; nginx's master creates the last directory): ``<this>/qlikauth-cache-<prefix id>``.
DEFAULT_IDENTITY_CACHE_PARENT = "/var/lib/nginx"

Sticky = Literal["identity", "cookie", "ip"]

# Headers nginx itself must own; a header virtual proxy may not be configured with them.
_PROTOCOL_HEADERS = frozenset(
    h.lower()
    for h in (
        "Host",
        "Connection",
        "Upgrade",
        "Content-Length",
        "Transfer-Encoding",
        "Cookie",
        "Authorization",
        "Forwarded",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "X-Forwarded-Host",
        "X-Original-URI",
        "X-Original-Method",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Proxy-Authorization",
        IDENTITY_RESPONSE_HEADER,
    )
)
# Header names Qlik reads itself: a client's copy is cleared explicitly (belt and braces: a
# header virtual proxy ignores most of them from clients, but nothing needs them from a browser).
_CLEARED_HEADERS = (
    "X-Qlik-User",
    "X-Qlik-Security",
    "X-Qlik-ProxySession",
    "X-Qlik-ProxyId",
    "X-Qlik-Trace",
    "X-Qlik-App",
    "X-Qlik-Capabilities",
)
# Anything that could end a value or start a directive, variable or comment in nginx.
_UNSAFE = re.compile(r"[\s;{}\"'\\$#`]|[^\x21-\x7e]")
_HOST = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?\Z"
)
_SERVER_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_.-]+\Z")
_PREFIX = re.compile(r"[A-Za-z0-9_.~-]+\Z")
_PATH = re.compile(r"/[A-Za-z0-9/._~-]*\Z")
_COOKIE = re.compile(r"[A-Za-z0-9_.-]+\Z")
_PARAM = re.compile(r"[A-Za-z0-9_.-]+\Z")


def _safe(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}.")
    bad = _UNSAFE.search(value)
    if bad:
        raise ConfigurationError(
            f"{what} {value[:80]!r} contains {bad.group()!r}: whitespace, newlines, ';', braces, "
            "quotes, backslashes, '$', '#' and non-ASCII characters could inject nginx directives."
        )
    return value


def _host(value: str, what: str) -> str:
    """A DNS name or IP address (IPv6 without brackets); returned as written in nginx."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        if not _HOST.match(value):
            raise ConfigurationError(
                f"{what} {value!r} is not a host name or IP address."
            ) from None
        return value
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _port(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigurationError(
            f"{what} must be a port number between 1 and 65535, got {value!r}."
        )
    return value


def _abs_path(value: object, what: str) -> str:
    path = _safe(value, what)
    if not path.startswith("/"):
        raise ConfigurationError(
            f"{what} {path!r} must be an absolute path (nginx reads relative paths from its own "
            "prefix, not from where you are)."
        )
    return path


def _url(
    value: object, what: str, schemes: tuple[str, ...], *, path: bool
) -> tuple[str, str, int, str]:
    url = _safe(value, what)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{what} {url!r} cannot be parsed: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes or not parts.hostname:
        raise ConfigurationError(f"{what} {url!r} must be an absolute {'/'.join(schemes)} URL.")
    if parts.username is not None or "@" in parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"{what} {url!r} must not carry user info, a query or a fragment.")
    if parts.path not in ("", "/") and (not path or not _PATH.match(parts.path)):
        raise ConfigurationError(
            f"{what} {url!r} must not have a path."
            if not path
            else f"{what} {url!r} has a path with characters other than letters, digits and "
            "'/._~-'."
        )
    host = _host(parts.hostname, what)
    return scheme, host, port or (443 if scheme == "https" else 80), parts.path.rstrip("/")


@dataclass(frozen=True, slots=True)
class QpsNode:
    """One QPS node as nginx reaches it: ``https://host[:port]`` (the hub/proxy port, 443 by
    default)."""

    host: str
    port: int = 443

    @classmethod
    def parse(cls, url: str) -> QpsNode:
        """Parse a hub URL such as ``https://qs1.example.com`` or ``https://qs1:8443/``."""
        _scheme, host, port, _path = _url(url, "QPS node", ("https",), path=False)
        return cls(host, port)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def tls_name(self) -> str:
        return self.host.strip("[]")


def _render(template: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {key!r} has no value")
        return values[key]

    return re.sub(r"\{\{(\w+)\}\}", sub, template)


def _template(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def generate_server_block(
    *,
    server_name: str | Sequence[str],
    tls_cert: str,
    tls_key: str,
    portal_url: str,
    login_url: str,
    header_name: str,
    qps_nodes: Sequence[str],
    root_pem: str,
    prefix: str,
    listen_host: str = "0.0.0.0",  # noqa: S104 - a front proxy listens publicly by design
    listen_port: int = 443,
    session_cookie_name: str | None = None,
    identity_path: str = DEFAULT_IDENTITY_PATH,
    public_origin: str | None = None,
    sticky: Sticky = "identity",
    tls_name: str | None = None,
    next_param: str = "next",
    portal_ca: str | None = None,
    identity_response_header: str = IDENTITY_RESPONSE_HEADER,
    identity_cache: int = DEFAULT_IDENTITY_CACHE,
    identity_cache_dir: str | None = None,
) -> str:
    """The nginx configuration (``map``/``upstream``/``server`` blocks, for ``http {}``) for one
    header virtual proxy.

    :param server_name: the public host name(s) browsers use (nginx ``server_name``).
    :param tls_cert: absolute path to the certificate (chain) nginx presents to browsers.
    :param tls_key: absolute path to its private key.
    :param portal_url: where nginx reaches the portal, e.g. ``http://127.0.0.1:5000`` (keep the
        portal on loopback or a private network).
    :param login_url: where a browser that is not signed in is sent, an absolute URL or path;
        ``?next=<the URL asked for>`` is appended.
    :param header_name: the virtual proxy's *header authentication header name*.
    :param qps_nodes: the QPS nodes' hub URLs, ``https://qs1.example.com[:port]``.
    :param root_pem: absolute path to Qlik's ``root.pem``; the nodes' certificates are verified
        against it (and their names checked).
    :param prefix: the virtual proxy prefix (header authentication is not available on the
        default virtual proxy, so it is required).
    :param listen_host: address nginx listens on. :param listen_port: its port.
    :param session_cookie_name: the virtual proxy's session cookie (default
        ``X-Qlik-Session-<prefix>``): the only cookie forwarded to the Qlik nodes (the portal's
        own session cookie never reaches them), and the one ``sticky="cookie"`` hashes.
    :param identity_path: the portal's identity endpoint (default ``/qlik/header-auth``).
    :param public_origin: ``https://host[:port]`` browsers use, for the ``next`` URL (default
        from the first server name and the listen port).
    :param sticky: how a browser stays on one node: ``"identity"`` (hash of the user the portal
        granted: works from the first request, across devices, no cookie needed), ``"cookie"``
        (hash of the Qlik session cookie, falling back to the client address) or ``"ip"``.
    :param tls_name: a name every node's certificate carries. With it (or when all nodes share
        a host) the nodes form one nginx ``upstream`` with failover; without it each node is
        verified under its own name and chosen by ``split_clients`` (no automatic failover).
    :param next_param: the query parameter the login page reads the return URL from.
    :param portal_ca: absolute path to the CA bundle verifying an ``https`` portal URL.
    :param identity_response_header: the response header the identity endpoint answers with
        (the integrations' ``HEADER_RESPONSE_HEADER``, default ``X-Qlik-Header-Value``).
    :param identity_cache: seconds nginx may reuse the portal's 200 answer for requests with
        exactly the same ``Cookie`` header (default 5; 0: ask the portal on every request). A
        browser that signs out loses or replaces its portal cookie and is asked about at once;
        a *copy* of a signed-out cookie header keeps its identity for at most this long
        (docs/nginx.md, "The identity cache").
    :param identity_cache_dir: absolute directory for nginx's cache files, whose parent exists
        (they hold cookie headers and identities: readable by nginx only, ideally on tmpfs);
        default ``/var/lib/nginx/qlikauth-cache-<prefix>``.
    """
    header = check_header_name(header_name)
    if header.lower() in _PROTOCOL_HEADERS:
        raise ConfigurationError(
            f"header name {header!r} is an HTTP or proxy header nginx sets itself; choose another, "
            "e.g. X-Portal-User."
        )
    response_header = check_header_name(_safe(identity_response_header, "identity_response_header"))
    if response_header.lower() == header.lower():
        raise ConfigurationError(
            "identity_response_header must differ from the identity header name."
        )
    prefix_s = _safe(prefix, "virtual proxy prefix").strip("/")
    if not prefix_s or not _PREFIX.match(prefix_s):
        raise ConfigurationError(
            f"virtual proxy prefix {prefix!r} must be letters, digits and '_.~-' (and not empty: "
            "header authentication is not available on the default virtual proxy)."
        )
    ident = re.sub(r"[^a-z0-9]", "_", prefix_s.lower())

    names = [server_name] if isinstance(server_name, str) else list(server_name)
    if not names:
        raise ConfigurationError("server_name: give at least one host name.")
    for n in names:
        if not _SERVER_NAME.match(_safe(n, "server_name")):
            raise ConfigurationError(f"server_name {n!r} must be a host name (or *.domain).")

    port = _port(listen_port, "listen_port")
    listen = f"{_host(_safe(listen_host, 'listen_host'), 'listen_host')}:{port}"

    cert = _abs_path(tls_cert, "tls_cert")
    key = _abs_path(tls_key, "tls_key")
    root = _abs_path(root_pem, "root_pem")

    pscheme, phost, pport, ppath = _url(portal_url, "portal_url", ("http", "https"), path=True)
    ipath = _safe(identity_path, "identity_path")
    if not _PATH.match(ipath) or ipath == "/":
        raise ConfigurationError(
            f"identity_path {identity_path!r} must be a path such as {DEFAULT_IDENTITY_PATH!r}."
        )
    portal_tls = ""
    if pscheme == "https":
        if portal_ca is None:
            raise ConfigurationError(
                "portal_url is https: pass portal_ca (the CA bundle that verifies the portal), or "
                "reach the portal over http on loopback."
            )
        portal_tls = (
            "        proxy_ssl_verify on;\n"
            f"        proxy_ssl_trusted_certificate {_abs_path(portal_ca, 'portal_ca')};\n"
            "        proxy_ssl_server_name on;\n"
            f"        proxy_ssl_name {phost.strip('[]')};\n"
        )

    login = _safe(login_url, "login_url")
    if login.startswith("/"):
        if login.startswith("//") or "#" in login:
            raise ConfigurationError(f"login_url {login!r} must be an absolute URL or a path.")
        urlsplit(login)
    else:
        _url(login.split("?", 1)[0], "login_url", ("http", "https"), path=True)
    login_sep = "&" if "?" in login else "?"
    if not _PARAM.match(_safe(next_param, "next_param")):
        raise ConfigurationError(f"next_param {next_param!r} must be letters, digits and '_.-'.")

    if public_origin is None:
        origin = f"https://{names[0].lstrip('*.')}" + ("" if port == 443 else f":{port}")
        public_port = port
    else:
        _s, oh, op, opath = _url(public_origin, "public_origin", ("https",), path=False)
        origin = f"https://{oh}" + ("" if op == 443 else f":{op}")
        public_port = op

    if not qps_nodes or isinstance(qps_nodes, str):
        raise ConfigurationError(
            "qps_nodes: give a list of hub URLs such as ['https://qs1.example.com']."
        )
    nodes = [QpsNode.parse(u) for u in qps_nodes]
    if len({n.address.lower() for n in nodes}) != len(nodes):
        raise ConfigurationError("qps_nodes lists the same node twice.")

    cookie = (
        session_cookie_name if session_cookie_name is not None else f"X-Qlik-Session-{prefix_s}"
    )
    if not _COOKIE.match(_safe(cookie, "session_cookie_name")):
        raise ConfigurationError(
            f"session_cookie_name {cookie!r} must be letters, digits and '_.-'."
        )
    if sticky not in ("identity", "cookie", "ip"):
        raise ConfigurationError(f"sticky must be 'identity', 'cookie' or 'ip', got {sticky!r}.")
    if tls_name is not None:
        tls_name = _host(_safe(tls_name, "tls_name"), "tls_name").strip("[]")

    upstreams, proxy_pass, ssl_name = _upstreams(ident, nodes, sticky, cookie, tls_name)
    cache_http, cache_location = _identity_cache(ident, identity_cache, identity_cache_dir)

    clear = "".join(
        f'        proxy_set_header {h} "";\n'
        for h in _CLEARED_HEADERS
        if h.lower() != header.lower()
    )
    values = {
        "id": ident,
        "prefix": prefix_s,
        "prefix_re": re.escape(prefix_s).replace("\\-", "-").replace("\\~", "~"),
        "header_name": header,
        "listen": listen,
        "server_name": " ".join(names),
        "tls_cert": cert,
        "tls_key": key,
        "root_pem": root,
        "auth_location": f"/_qlikauth/identity/{ident}",
        "portal_url": f"{pscheme}://{phost}:{pport}{ppath}",
        "identity_path": ipath,
        "portal_tls": portal_tls,
        "login_url": login,
        "login_sep": login_sep,
        "next_param": next_param,
        "public_origin": origin,
        "upstreams": upstreams,
        "target": proxy_pass.removeprefix("https://"),
        "ssl_name": ssl_name,
        "clear_headers": clear.rstrip("\n"),
        "response_var": "upstream_http_" + response_header.lower().replace("-", "_"),
        "host_re": "|".join(_name_regex(n) for n in names),
        # Browsers leave the port out of Host only when it is 443.
        "port_re": "(:443)?" if public_port == 443 else f":{public_port}",
        "identity_cache_http": cache_http,
        "identity_cache": cache_location,
        "cookie_re": re.escape(cookie).replace("\\-", "-"),
    }
    return _render(_template("server.conf.tmpl"), values)


def _identity_cache(ident: str, seconds: object, directory: str | None) -> tuple[str, str]:
    """The ``proxy_cache`` of the portal's identity answers (http level, auth location), or ("",
    "")."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 300:
        raise ConfigurationError(
            f"identity_cache must be whole seconds between 0 (off) and 300, got {seconds!r}: it is "
            "how "
            "long a copied, signed-out portal cookie may keep its identity."
        )
    if seconds == 0:
        return "", ""
    if directory is None:
        directory = f"{DEFAULT_IDENTITY_CACHE_PARENT}/qlikauth-cache-{ident}"
    where = _abs_path(directory, "identity_cache_dir").rstrip("/")
    zone = f"qlikauth_{ident}_cache"
    http = (
        f"# Identity cache: the portal's 200 answers, reused for {seconds}s by requests with "
        "exactly the\n"
        "# same Cookie header (all the portal decides from); a request without cookies always "
        "asks.\n"
        f"proxy_cache_path {where} levels=1:2 keys_zone={zone}:1m max_size=64m "
        f"inactive={max(seconds, 10)}s "
        "use_temp_path=off;\n"
        f"map $http_cookie $qlikauth_cache_skip_{ident} {{\n"
        "    default 0;\n"
        '    "" 1;\n'
        "}\n"
    )
    location = (
        f"        proxy_cache {zone};\n"
        '        proxy_cache_key "$http_cookie";\n'
        f"        proxy_cache_bypass $qlikauth_cache_skip_{ident};\n"
        f"        proxy_no_cache $qlikauth_cache_skip_{ident};\n"
        f"        proxy_cache_valid 200 {seconds}s;\n"
        "        proxy_cache_methods GET HEAD;\n"
        "        proxy_cache_lock on;\n"
        "        # The portal answers no-store (right for browsers); nginx may keep it this short "
        "while.\n"
        "        # Only 200s are kept, never an answer that sets a cookie.\n"
        "        proxy_ignore_headers Cache-Control Expires X-Accel-Expires;\n"
    )
    return http, location


def _name_regex(name: str) -> str:
    """A PCRE for one nginx ``server_name``: exact, ``*.domain`` or ``.domain`` (domain and
    subdomains)."""
    n = name.lower().rstrip(".")
    if n.startswith("*."):
        return r"([a-z0-9-]+\.)+" + re.escape(n[2:])
    if n.startswith("."):
        return r"([a-z0-9-]+\.)*" + re.escape(n[1:])
    return re.escape(n)


def _upstreams(
    ident: str, nodes: list[QpsNode], sticky: str, cookie: str, tls_name: str | None
) -> tuple[str, str, str]:
    out: list[str] = []
    if sticky == "cookie":
        cookie_re = re.escape(cookie).replace("\\-", "-")
        out.append(
            "# Stickiness: the Qlik session cookie, or the client address before there is one.\n"
            f"map $http_cookie $qlikauth_sticky_{ident} {{\n"
            "    default $remote_addr;\n"
            f'    "~(?:^|;)\\s*{cookie_re}=([^;\\s]+)" $1;\n'
            "}\n"
        )
        key = f"$qlikauth_sticky_{ident}"
    elif sticky == "identity":
        key = f"$qlikauth_identity_{ident}"
    else:
        key = "$remote_addr"

    one_name = tls_name or (
        nodes[0].tls_name if len({n.host.lower() for n in nodes}) == 1 else None
    )
    for name in [one_name] if one_name is not None else [n.tls_name for n in nodes]:
        if _is_ip(name):
            raise ConfigurationError(
                f"QPS node {name!r} is an IP address: nginx verifies upstream certificates by DNS "
                "name "
                "only. Use the nodes' host names, or pass tls_name (--tls-name), a DNS name every "
                "node's certificate carries."
            )
    if one_name is not None:
        balance = "    ip_hash;\n" if sticky == "ip" else f"    hash {key} consistent;\n"
        servers = "".join(f"    server {n.address} max_fails=1 fail_timeout=10s;\n" for n in nodes)
        out.append(
            f"# The QPS node(s); every certificate is verified as {one_name!r} against root.pem.\n"
            f"upstream qlikauth_qps_{ident} {{\n{balance}{servers}    keepalive 16;\n}}\n"
        )
        return "\n".join(out), f"https://qlikauth_qps_{ident}", one_name

    # Nodes with their own names: nginx can verify only one name per location, so the node is
    # chosen first (split_clients on the sticky key) and its name looked up for proxy_ssl_name.
    share = round(100 / len(nodes), 2)
    split = (
        "".join(f"    {share}% {i};\n" for i in range(len(nodes) - 1))
        + f"    * {len(nodes) - 1};\n"
    )
    out.append(
        "# Several QPS nodes, each verified under its own name: the sticky key picks one.\n"
        f'split_clients "{key}" $qlikauth_node_{ident} {{\n{split}}}\n'
        f"map $qlikauth_node_{ident} $qlikauth_ssl_name_{ident} {{\n"
        f"    default {nodes[0].tls_name};\n"
        + "".join(f"    {i} {n.tls_name};\n" for i, n in enumerate(nodes))
        + "}\n"
    )
    for i, n in enumerate(nodes):
        out.append(
            f"upstream qlikauth_qps_{ident}_{i} "
            f"{{\n    server {n.address};\n    keepalive 16;\n}}\n"
        )
    return (
        "\n".join(out),
        f"https://qlikauth_qps_{ident}_$qlikauth_node_{ident}",
        f"$qlikauth_ssl_name_{ident}",
    )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def generate_nginx_conf(
    server_blocks: str | Sequence[str],
    runtime_dir: str,
    *,
    worker_processes: int = 1,
    worker_connections: int = 1024,
    user: str | None = None,
) -> str:
    """A complete ``nginx.conf`` around server block(s), for ``nginx -p DIR -c nginx.conf``.

    The pid file, error and access logs and the temporary directories all live under
    ``runtime_dir`` (absolute), so nginx can run without touching ``/etc/nginx`` or ``/var``.
    """
    run = _abs_path(runtime_dir, "runtime_dir").rstrip("/") or "/"
    if (
        isinstance(worker_processes, bool)
        or not isinstance(worker_processes, int)
        or worker_processes < 1
    ):
        raise ConfigurationError(
            f"worker_processes must be a positive integer, got {worker_processes!r}."
        )
    if (
        isinstance(worker_connections, bool)
        or not isinstance(worker_connections, int)
        or worker_connections < 16
    ):
        raise ConfigurationError(
            f"worker_connections must be an integer >= 16, got {worker_connections!r}."
        )
    blocks = [server_blocks] if isinstance(server_blocks, str) else list(server_blocks)
    user_line = f"user {_safe(user, 'user')};\n" if user is not None else ""
    temp = "".join(
        f"    {kind}_temp_path {run}/{kind}_temp;\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    body = "\n".join(blocks)
    return (
        "# Generated by qlikauth: a standalone nginx.conf (nginx -p DIR -c nginx.conf).\n"
        f"{user_line}worker_processes {worker_processes};\n"
        f"pid {run}/nginx.pid;\n"
        f"error_log {run}/error.log warn;\n\n"
        f"events {{\n    worker_connections {worker_connections};\n}}\n\n"
        "http {\n"
        f"    access_log {run}/access.log;\n"
        f"{temp}"
        "    server_tokens off;\n"
        "    default_type application/octet-stream;\n\n"
        + "".join(f"    {line}\n" if line else "\n" for line in body.splitlines())
        + "}\n"
    )
