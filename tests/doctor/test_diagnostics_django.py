"""The diagnostics page's endpoints on Django: the page, the report (logged, or refused from
another origin), the payload."""

from __future__ import annotations

import json

from qlikauth.web import diagnostics


def test_report_endpoint_on_django(certs_dir):
    from _django_setup import configure_django

    configure_django()
    import qlikauth_django_test_urls as base
    from django.test import Client, override_settings
    from django.urls import include, path

    urls = type(
        "urls",
        (),
        {
            "urlpatterns": [
                *base.urlpatterns,
                path("qlik/diagnostics/", include("django_qlikauth.diagnostics")),
            ]
        },
    )
    settings = {
        "QPS_NODES": "https://localhost:4243",
        "CERTS": str(certs_dir),
        "HUB_URL": "https://localhost/portal/hub/",
    }
    with override_settings(QLIKAUTH=settings, ROOT_URLCONF=urls):
        client = Client()
        page = client.get("/qlik/diagnostics/?hold=3")
        assert page.status_code == 200 and b'"hold": 3.0' in page.content
        body = json.dumps({"results": [{"test": "hub", "status": "ok", "detail": ""}]})
        ok = client.post(
            "/qlik/diagnostics/report",
            data=body,
            content_type="application/json",
            HTTP_ORIGIN="http://testserver",
        )
        assert ok.status_code == 204
        bad = client.post(
            "/qlik/diagnostics/report",
            data=body,
            content_type="application/json",
            HTTP_ORIGIN="https://evil.example",
        )
        assert bad.status_code == 403
        assert len(client.get("/qlik/diagnostics/payload").content) == diagnostics.PAYLOAD_BYTES
