"""The generated configuration: parameter validation (config injection), content, ``nginx -t``."""

from __future__ import annotations

import subprocess

import pytest

from qlikauth.cli import main
from qlikauth.exceptions import ConfigurationError
from qlikauth.nginx import DEFAULT_IDENTITY_CACHE, generate_nginx_conf, generate_server_block

from .helpers import NGINX, Nginx, second_loopback_name


def _kw(certs, **over):
    kw = dict(
        server_name="qlik.example.com",
        tls_cert=str(certs / "nginx.pem"),
        tls_key=str(certs / "nginx_key.pem"),
        portal_url="http://127.0.0.1:5000",
        login_url="https://portal.example.com/login",
        header_name="X-Portal-User",
        qps_nodes=["https://localhost:4443"],
        root_pem=str(certs / "root.pem"),
        prefix="hdr",
        listen_host="127.0.0.1",
        listen_port=8443,
    )
    if "identity_cache_dir" not in over:
        # nginx -t creates the cache directory: the default one (/var/lib/nginx/...) is the
        # subject of its own test, not of every variant
        kw["identity_cache"] = 0
    kw.update(over)
    return kw


INJECTIONS = [
    ("server_name", "qlik.example.com; include /etc/passwd"),
    ("server_name", "a\nb"),
    ("tls_cert", "/tmp/x.pem;\nroot /"),
    ("tls_key", "/tmp/k{.pem"),
    ("root_pem", '/tmp/"root.pem'),
    ("portal_url", "http://127.0.0.1:5000/}"),
    ("portal_url", "http://127.0.0.1:5000/$host"),
    ("login_url", "https://portal.example.com/login'"),
    ("login_url", "https://portal.example.com/login#x"),
    ("login_url", "//evil.example/login"),
    ("header_name", "X-Portal-User;"),
    ("header_name", "X_Portal_User"),
    ("header_name", "X-Qlik-User"),
    ("header_name", "Host"),
    ("prefix", ""),
    ("prefix", "a/b"),
    ("prefix", "hdr;"),
    ("qps_nodes", ["http://qs1.example.com"]),
    ("qps_nodes", ["https://qs1.example.com/path"]),
    ("qps_nodes", ["https://qs1.example.com\n"]),
    ("qps_nodes", "https://qs1.example.com"),
    ("qps_nodes", []),
    ("session_cookie_name", "a=b"),
    ("identity_path", "/qlik/header-auth;"),
    ("identity_path", "qlik"),
    ("listen_port", 0),
    ("listen_host", "127.0.0.1 default_server"),
    ("tls_cert", "relative.pem"),
    ("sticky", "round-robin"),
    ("public_origin", "http://qlik.example.com"),
    ("next_param", "next&x"),
    ("tls_name", "bad name"),
    ("tls_name", "10.0.0.1"),
    ("qps_nodes", ["https://10.0.0.1", "https://10.0.0.2"]),
    ("qps_nodes", ["https://127.0.0.1:4443"]),
    ("identity_cache", -1),
    ("identity_cache", 301),
    ("identity_cache", 1.5),
    ("identity_cache", True),
    ("identity_cache_dir", "relative/cache"),
]


@pytest.mark.parametrize(("field", "value"), INJECTIONS)
def test_every_parameter_is_validated(certs, field, value):
    with pytest.raises(ConfigurationError) as info:
        generate_server_block(**_kw(certs, **{field: value}))
    assert str(info.value)


def test_https_portal_needs_a_ca(certs):
    with pytest.raises(ConfigurationError, match="portal_ca"):
        generate_server_block(**_kw(certs, portal_url="https://portal.internal:8443"))
    text = generate_server_block(
        **_kw(certs, portal_url="https://portal.internal:8443", portal_ca=str(certs / "root.pem"))
    )
    assert "proxy_ssl_name portal.internal;" in text


def test_runtime_dir_is_validated():
    with pytest.raises(ConfigurationError):
        generate_nginx_conf("", "relative/dir")
    with pytest.raises(ConfigurationError):
        generate_nginx_conf("", "/tmp/x;y")


def test_server_block_has_the_hardening(certs):
    text = generate_server_block(**_kw(certs))
    assert "proxy_set_header X-Portal-User $qlikauth_header_value_hdr;" in text
    assert "auth_request_set $qlikauth_identity_hdr $upstream_http_x_qlik_header_value;" in text
    assert "underscores_in_headers off;" in text and "ignore_invalid_headers on;" in text
    assert "internal;" in text
    assert (
        "proxy_ssl_verify on;" in text
        and f"proxy_ssl_trusted_certificate {certs / 'root.pem'};" in text
    )
    assert "proxy_ssl_name localhost;" in text
    assert "proxy_pass https://$qlikauth_target_hdr;" in text  # no URI part: the raw URI
    assert "default qlikauth_qps_hdr;" in text
    assert "proxy_set_header Host $http_host;" in text
    assert "error_page 401 = @qlikauth_login_hdr;" in text
    assert "more_set_headers" not in text and "add_header X-Portal-User" not in text


def test_only_the_qlik_session_cookie_is_forwarded_to_qlik(certs):
    text = generate_server_block(**_kw(certs))
    qlik, auth = (
        text.split("location /hdr/ {")[1],
        text.split("location = /_qlikauth/identity/hdr {")[1],
    )
    auth = auth.split("}")[0]
    assert "proxy_set_header Cookie $qlikauth_qlik_cookie_hdr;" in qlik
    assert "Cookie" not in auth  # the portal decides from the browser's cookies: all of them
    assert '"~(?:^|;)\\s*(X-Qlik-Session-hdr=[^;]*)" $1;' in text
    named = generate_server_block(**_kw(certs, session_cookie_name="QlikSession.hdr"))
    assert '"~(?:^|;)\\s*(QlikSession\\.hdr=[^;]*)" $1;' in named


def test_several_nodes_with_own_names_are_each_verified(certs):
    text = generate_server_block(
        **_kw(certs, qps_nodes=["https://qs1.example.com", "https://qs2.example.com:4443"])
    )
    assert 'split_clients "$qlikauth_identity_hdr" $qlikauth_node_hdr' in text
    assert "0 qs1.example.com;" in text and "1 qs2.example.com;" in text
    assert "server qs2.example.com:4443;" in text
    assert "proxy_ssl_name $qlikauth_ssl_name_hdr;" in text


def test_several_nodes_with_one_tls_name_share_an_upstream(certs):
    text = generate_server_block(
        **_kw(
            certs,
            qps_nodes=["https://10.0.0.1", "https://10.0.0.2"],
            tls_name="qlik.internal",
            sticky="cookie",
        )
    )
    assert "hash $qlikauth_sticky_hdr consistent;" in text
    assert "X-Qlik-Session-hdr=" in text
    assert "server 10.0.0.1:443" in text and "server 10.0.0.2:443" in text
    assert "proxy_ssl_name qlik.internal;" in text
    ip = generate_server_block(
        **_kw(
            certs,
            qps_nodes=["https://10.0.0.1", "https://10.0.0.2"],
            tls_name="qlik.internal",
            sticky="ip",
        )
    )
    assert "ip_hash;" in ip


VARIANTS = {
    "one-node": {},
    "two-nodes-own-names": {
        "qps_nodes": [
            "https://localhost:4443",
            f"https://{second_loopback_name() or 'localhost'}:4444",
        ]
    },
    "three-nodes-cookie": {
        "qps_nodes": ["https://127.0.0.1:4443", "https://127.0.0.1:4444", "https://[::1]:4445"],
        "sticky": "cookie",
        "tls_name": "localhost",
    },
    "tls-name-ip": {
        "qps_nodes": ["https://127.0.0.1:4443", "https://127.0.0.1:4444"],
        "tls_name": "localhost",
        "sticky": "ip",
    },
    "login-with-query": {
        "login_url": "/login?from=qlik",
        "identity_path": "/portal/qlik/header-auth",
        "portal_url": "http://127.0.0.1:5000/portal",
    },
    "ipv6-listen": {"listen_host": "::1", "server_name": ["localhost", "qlik.example.com"]},
    "identity-cache": {"identity_cache": 30, "identity_cache_dir": "/tmp"},
    "identity-cache-default-lifetime": {"identity_cache_dir": "/tmp"},
    "wildcard-names": {
        "server_name": ["*.example.com", ".example.org", "qlik-1.example.net"],
        "public_origin": "https://qlik.example.com",
    },
}


@pytest.mark.nginx
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_generated_config_passes_nginx_t(certs, name):
    n = Nginx(generate_server_block(**_kw(certs, **VARIANTS[name])), 0)
    try:
        r = n.test_config()
        assert r.returncode == 0, r.stderr
        assert "test is successful" in r.stderr
    finally:
        n.stop()


@pytest.mark.nginx
def test_two_virtual_proxies_share_one_nginx(certs):
    a = generate_server_block(**_kw(certs))
    b = generate_server_block(
        **_kw(certs, prefix="hdr2", header_name="X-Other-User", listen_port=8444)
    )
    n = Nginx(a + "\n" + b, 0)
    try:
        r = n.test_config()
        assert r.returncode == 0, r.stderr
    finally:
        n.stop()


def _local_cli_args(certs) -> list[str]:
    """``qlikauth nginx-config`` for a loopback site: the arguments every full-config CLI test
    starts from."""
    return [
        "nginx-config",
        "--server-name",
        "localhost",
        "--listen",
        "127.0.0.1:8443",
        "--tls-cert",
        str(certs / "nginx.pem"),
        "--tls-key",
        str(certs / "nginx_key.pem"),
        "--portal",
        "http://127.0.0.1:5000",
        "--login-url",
        "http://localhost:5000/login",
        "--header-name",
        "X-Portal-User",
        "--qps-node",
        "https://localhost:4443",
        "--root-pem",
        str(certs / "root.pem"),
        "-p",
        "hdr",
    ]


@pytest.mark.nginx
def test_cli_writes_a_config_nginx_accepts(certs, tmp_path, capsys):
    out = tmp_path / "nginx.conf"
    rc = main([*_local_cli_args(certs), "--full", str(tmp_path), "-o", str(out)])
    assert rc == 0
    r = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr


def test_cli_refuses_injection_with_one_line(certs, capsys):
    rc = main(
        [
            "nginx-config",
            "--server-name",
            "localhost;evil",
            "--tls-cert",
            str(certs / "nginx.pem"),
            "--tls-key",
            str(certs / "nginx_key.pem"),
            "--portal",
            "http://127.0.0.1:5000",
            "--login-url",
            "/login",
            "--header-name",
            "X-Portal-User",
            "--qps-node",
            "https://localhost:4443",
            "--root-pem",
            str(certs / "root.pem"),
            "-p",
            "hdr",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("qlikauth: error: server_name") and err.count("\n") == 1


def test_cli_prints_the_server_block(certs, capsys):
    rc = main(
        [
            "nginx-config",
            "--server-name",
            "qlik.example.com",
            "--tls-cert",
            str(certs / "nginx.pem"),
            "--tls-key",
            str(certs / "nginx_key.pem"),
            "--portal",
            "http://127.0.0.1:5000",
            "--login-url",
            "https://portal.example.com/login",
            "--header-name",
            "X-Portal-User",
            "--qps-node",
            "https://qs1.example.com",
            "--qps-node",
            "https://qs2.example.com",
            "-p",
            "hdr",
            "--root-pem",
            str(certs / "root.pem"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "listen 0.0.0.0:443 ssl;" in out and "server qs1.example.com:443;" in out
    assert "next=https://qlik.example.com$qlikauth_next_hdr" in out


def test_host_allow_list_means_what_server_name_means(certs):
    import re

    block = generate_server_block(
        **_kw(
            certs,
            server_name=["*.example.com", ".example.org", "qlik-1.example.net"],
            public_origin="https://qlik.example.com",
        )
    )
    (pattern,) = re.findall(r'map \$http_host \S+ \{\n    default 1;\n    "~\*(.*)" 0;', block)
    ok = re.compile(pattern, re.I)
    for host in (
        "a.example.com",
        "a.b.example.com",
        "example.org",
        "x.example.org",
        "QLIK-1.example.net",
        "qlik-1.example.net:443",
    ):
        assert ok.match(host), host
    for host in (
        "example.com",
        "evil.com",
        "a.example.com.evil.com",
        "qlik-1.example.net:8443",
        "qlik-1xexample.net",
        "a.example.com@evil.com",
        "a.example.com:443:1",
    ):
        assert not ok.match(host), host


@pytest.mark.nginx
def test_cli_identity_cache_under_full_lives_in_the_runtime_dir(certs, tmp_path):
    out = tmp_path / "nginx.conf"
    rc = main(
        [*_local_cli_args(certs), "--identity-cache", "5", "--full", str(tmp_path), "-o", str(out)]
    )
    assert rc == 0
    conf = out.read_text()
    assert (
        f"proxy_cache_path {tmp_path}/identity_cache " in conf
        and "proxy_cache_valid 200 5s;" in conf
    )
    assert 'proxy_cache_key "$http_cookie";' in conf
    r = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(out)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr


def test_identity_cache_on_by_default(certs):
    kw = _kw(certs)
    del kw["identity_cache"]
    block = generate_server_block(**kw)
    assert (
        f"proxy_cache_valid 200 {DEFAULT_IDENTITY_CACHE}s;" in block and DEFAULT_IDENTITY_CACHE == 5
    )
    assert "proxy_cache_path /var/lib/nginx/qlikauth-cache-hdr " in block
    assert 'proxy_cache_key "$http_cookie";' in block
    # a request without cookies, and any answer but a 200, is never cached
    assert (
        "proxy_cache_bypass $qlikauth_cache_skip_hdr;" in block
        and "proxy_no_cache $qlikauth_cache_skip_hdr;" in block
    )
    assert "proxy_cache_valid 200 " in block and "proxy_cache_valid any" not in block


def test_identity_cache_zero_asks_on_every_request(certs):
    block = generate_server_block(**_kw(certs, identity_cache=0))
    assert "proxy_cache" not in block


def test_cli_identity_cache_by_default_and_off(certs, tmp_path):
    out = tmp_path / "block.conf"
    assert main([*_local_cli_args(certs), "-o", str(out)]) == 0
    assert "proxy_cache_valid 200 5s;" in out.read_text()
    assert main([*_local_cli_args(certs), "--identity-cache", "0", "-o", str(out)]) == 0
    assert "proxy_cache" not in out.read_text()
