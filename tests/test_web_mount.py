"""The web page's mount (``server/web.py``): served at ``/`` and ``/ui/*`` without a key, with
its security headers; every API route still needs the key; ``--no-web-ui`` turns it off."""

from __future__ import annotations

from safework.server.web import web_root

from .conftest import serve

KEYS = {"sk-web-mount-01": "alice"}


def test_the_page_and_its_assets_need_no_key() -> None:
    with serve(api_keys=KEYS) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>SafeWork chat</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        for asset in sorted(p.name for p in web_root().iterdir()):
            r = client.get(f"/ui/{asset}")
            assert r.status_code == 200, asset
            assert "content-security-policy" in r.headers
        assert (
            client.get("/ui/app.js")
            .headers["content-type"]
            .startswith(("text/javascript", "application/javascript"))
        )


def test_api_routes_still_need_the_key() -> None:
    with serve(api_keys=KEYS) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/memory").status_code == 401
        assert client.get("/ui/../v1/models").status_code in (401, 404)
        assert client.get("/ui/missing.js").status_code == 404
        headers = {"Authorization": "Bearer sk-web-mount-01"}
        assert client.get("/v1/models", headers=headers).status_code == 200


def test_no_web_ui_serves_the_api_only() -> None:
    with serve(web_ui=False) as client:
        assert client.get("/").status_code == 404
        assert client.get("/ui/app.js").status_code == 404
        assert client.get("/v1/models").status_code == 200
