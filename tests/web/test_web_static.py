"""How the API process serves the web app's files under /app (deni.entrypoints.web)."""

from __future__ import annotations

import re
import struct
from urllib.parse import urljoin

import httpx
import pytest
from fastapi.testclient import TestClient

from deni.entrypoints.web import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.support.api import assert_error

FILES = {
    "index.html": "text/html; charset=utf-8",
    "sw.js": "text/javascript; charset=utf-8",
    "js/sync-sw.js": "text/javascript; charset=utf-8",
    "js/app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "manifest.webmanifest": "application/manifest+json",
}


def assert_app_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["cache-control"] == "no-cache"
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/", "/app"])
def test_the_root_and_the_bare_prefix_redirect_to_the_app(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/app/"


def test_the_app_root_serves_index_html(client: TestClient) -> None:
    response = client.get("/app/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.content == (STATIC_DIR / "index.html").read_bytes()
    assert_app_headers(response)


@pytest.mark.parametrize(("name", "content_type"), FILES.items())
def test_each_file_has_its_content_type_and_the_app_headers(
    client: TestClient, name: str, content_type: str
) -> None:
    response = client.get(f"/app/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (STATIC_DIR / name).read_bytes()
    assert_app_headers(response)


def test_no_cache_still_lets_the_browser_revalidate(client: TestClient) -> None:
    """no-cache means "ask first": the answer to a matching validator is a bodiless 304."""
    first = client.get("/app/sw.js")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    by_etag = client.get("/app/sw.js", headers={"If-None-Match": etag})
    by_date = client.get("/app/sw.js", headers={"If-Modified-Since": last_modified})
    for response in (by_etag, by_date):
        assert response.status_code == 304
        assert response.content == b""
        assert_app_headers(response)


def test_head_is_answered_too(client: TestClient) -> None:
    response = client.head("/app/")
    assert response.status_code == 200
    assert response.content == b""


def test_a_missing_file_is_a_404_in_the_error_envelope(client: TestClient) -> None:
    response = client.get("/app/no-such-file.js")
    assert_error(response, 404, "not_found")
    assert_app_headers(response)


def test_the_files_are_read_only(client: TestClient) -> None:
    response = client.post("/app/index.html", content=b"x")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD"


def test_nothing_outside_static_is_served(client: TestClient) -> None:
    # The package's own source sits right next to static/.
    for path in ("/app/../__init__.py", "/app/%2e%2e/__init__.py", "/app/..%2f__init__.py"):
        assert client.get(path).status_code == 404, path


def test_the_api_keeps_its_own_headers(client: TestClient) -> None:
    response = client.get("/health")
    assert "content-security-policy" not in response.headers
    assert "cache-control" not in response.headers


def test_metrics_label_the_app_by_template_not_by_file(client: TestClient) -> None:
    for path in ("/app/", "/app/sw.js", "/app/js/app.js", "/app/no-such-file.js"):
        client.get(path)
    text = client.get("/metrics").text
    routes = set(re.findall(r'http_requests_total\{[^}]*route="([^"]*)"', text))
    assert "/app/{path}" in routes
    assert not any(".js" in route or "index" in route for route in routes), routes
    assert 'route="/app/{path}",status="404"' in text


def test_the_manifest_makes_an_installable_app_scoped_to_app(client: TestClient) -> None:
    manifest = client.get("/app/manifest.webmanifest").json()
    assert "Deni" in manifest["name"]
    assert manifest["start_url"] == "/app/"
    assert manifest["scope"] == "/app/"
    assert manifest["display"] == "standalone"
    pngs = [icon for icon in manifest["icons"] if icon.get("type") == "image/png"]
    assert {"192x192", "512x512"} <= {size for icon in pngs for size in icon["sizes"].split()}
    for icon in pngs:
        # Icon URLs are relative to the manifest's own URL.
        response = client.get(urljoin("/app/manifest.webmanifest", icon["src"]))
        assert response.status_code == 200, icon
        assert response.headers["content-type"] == "image/png"
        assert response.content[:8] == b"\x89PNG\r\n\x1a\n", icon
        width, height = struct.unpack(">II", response.content[16:24])  # the IHDR chunk
        assert f"{width}x{height}" in icon["sizes"].split(), icon


@pytest.mark.parametrize("name", ["js/i18n.js", "app.css", "index.html", "sw.js"])
def test_text_files_go_gzipped_to_a_browser_that_accepts_it(client: TestClient, name: str) -> None:
    plain = (STATIC_DIR / name).read_bytes()
    response = client.get(f"/app/{name}", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"].lower()
    assert int(response.headers["content-length"]) < len(plain) / 2
    assert response.content == plain  # httpx unzips it
    assert_app_headers(response)
    unzipped = client.get(f"/app/{name}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in unzipped.headers
    assert unzipped.content == plain


def _constant(source: str, name: str) -> str:
    found = re.search(rf"const {name} = (.+?);", source, re.DOTALL)
    assert found is not None, name
    return found.group(1)


@pytest.mark.parametrize(
    "name", ["SCHEMA_VERSION", "PUSH_MUTATIONS_MAX", "PUSH_ROUNDS_MAX", "NEEDS_PIN"]
)
def test_the_worker_pushes_by_the_pages_rules(name: str) -> None:
    """The service worker's push (js/sync-sw.js) is the page's (js/sync.js): the same protocol
    version, batch bounds and list of mutations that wait for a PIN."""
    page = (STATIC_DIR / "js" / "sync.js").read_text()
    worker = (STATIC_DIR / "js" / "sync-sw.js").read_text()
    assert _constant(worker, name) == _constant(page, name)


def test_the_worker_loads_its_background_sync_and_caches_every_module() -> None:
    worker = (STATIC_DIR / "sw.js").read_text()
    assert 'importScripts("js/sync-sw.js");' in worker
    modules = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.glob("js/**/*.js"))
    for module in modules:
        assert f'"{module}"' in worker, module
