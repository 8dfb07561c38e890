"""The console's static route and what it serves, without a model: files, types, refusals, auth paths."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.auth import is_public
from server.errors import install_error_handlers
from server.routes import console

IMPORT = re.compile(r"""^import .* from "\./([a-z_]+\.js)";$""", re.MULTILINE)
ASSET_REF = re.compile(r"""(?:src|href)="/console/([^"]+)\"""")


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(console.router)
    return TestClient(app)


def test_page_and_every_asset_it_needs_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    wanted = set(ASSET_REF.findall(page.text))
    assert {"app.js", "style.css"} <= wanted
    seen: set[str] = set()
    while wanted - seen:  # follow the module imports from app.js
        name = sorted(wanted - seen)[0]
        seen.add(name)
        r = client.get(f"/console/{name}")
        assert r.status_code == 200, name
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        assert r.headers["content-type"].startswith(kind), (name, r.headers["content-type"])
        wanted |= set(IMPORT.findall(r.text))
    on_disk = {p.name for p in console.CONSOLE_DIR.iterdir() if p.suffix in (".js", ".css")}
    assert seen == on_disk  # every file is reachable, none is left over
    assert client.head("/").status_code == 200


def test_nothing_on_the_page_points_outside(client: TestClient) -> None:
    for path in console.CONSOLE_DIR.iterdir():
        text = path.read_text()
        # The SVG namespace is an identifier, never fetched.
        outside = [u for u in re.findall(r"https?://[^\s\"')]+", text) if u != "http://www.w3.org/2000/svg"]
        assert outside == [], (path.name, outside)


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fapp.py", "App.js", "style.css.map"])
def test_other_names_are_a_404_naming_them(client: TestClient, name: str) -> None:
    r = client.get(f"/console/{name}")
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["type"] in ("not_found", "http_error"), error
    if "%2F" not in name:
        assert name in error["message"]


def test_only_the_console_is_public_beside_health() -> None:
    for path in ("/", "/console/app.js", "/health", "/ready"):
        assert is_public(path), path
    for path in ("/metrics", "/generate", "/v1/collections", "/consolex", "/docs", "/console"):
        assert not is_public(path), path
