"""GET / (the demo page) and its static assets: self-contained, nothing loaded from outside,
shipped with the package and the image. The page itself is driven in test_browser.py."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from service.demo import STATIC_DIR

REPO = Path(__file__).resolve().parents[2]
EXTERNAL_URL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}


def test_page_is_html_referencing_local_assets(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    for needle in ('<canvas id="canvas"', 'id="file"', 'type="file"', 'id="threshold"',
                   'type="range"', 'id="timings"', 'id="model"', 'id="error"',
                   '<select id="model-select"', '<label for="model-select"'):  # fmt: skip
        assert needle in html, needle
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert "/static/app.js" in refs and "/static/style.css" in refs
    for ref in refs:  # local paths or inline data only
        assert ref.startswith(("/", "data:")) and not ref.startswith("//"), ref


def test_no_external_urls_anywhere(client: TestClient) -> None:
    for path in ["/", *(f"/static/{name}" for name in ASSETS)]:
        text = client.get(path).text
        assert not re.search(r"https?://", text, re.IGNORECASE), path
        assert not EXTERNAL_URL.search(text), (path, EXTERNAL_URL.search(text))
    csp = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp


def test_static_assets_are_served(client: TestClient) -> None:
    for name, media in ASSETS.items():
        r = client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"].split(";")[0] == media
        assert r.content == (STATIC_DIR / name).read_bytes()
    missing = client.get("/static/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_page_is_served_before_the_model_is_ready(serve: Any, tmp_path: Path) -> None:
    """The page is static: it loads (and then reports the model state) even when not ready."""
    with serve(ready=False, model_path=tmp_path / "missing.onnx") as (_, c):
        assert c.get("/").status_code == 200
        assert c.get("/static/app.js").status_code == 200
        assert c.get("/model").status_code == 503


def test_page_is_not_in_the_api_spec(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_js_uses_the_api_the_page_needs() -> None:
    js = (STATIC_DIR / "app.js").read_text()
    for needle in ('fetch("/models"', 'fetch("/model"', "fetch(`/models/${encodeURIComponent(",
                   "/detect?score_threshold=", "annotate=true", "dataset.drawn", "timings_ms",
                   'addEventListener("drop"', 'form.append("image"',
                   "`&model=${encodeURIComponent(state.model)}`"):  # fmt: skip
        assert needle in js, needle
    # both requests to /detect (detections, annotated download) name the picked model
    assert js.count("modelQuery()") == 2 and js.count("/detect?") == 2


def test_the_model_fields_the_page_reads_are_in_the_api(client: TestClient) -> None:
    """The picker reads GET /models (`default`, each entry's fields) and GET /models/{name}:
    a field renamed in service/schemas.py would leave the page blank, so check them here."""
    js = (STATIC_DIR / "app.js").read_text()
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    entry = set(schemas["ModelStatus"]["properties"])
    read = set(re.findall(r"\bm\.([a-z_]+)", js))  # `m`: a model entry in app.js
    assert {"name", "version", "state", "reason", "classes", "preset", "precision"} <= read
    assert read - {"score_threshold"} <= entry, read - entry  # score_threshold: optional
    assert "default" in schemas["ModelList"]["properties"] and "listing.default" in js
    assert "score_threshold" in schemas["ModelInfo"]["properties"]  # GET /model


def test_static_files_ship_in_the_package_and_the_image() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["service"]
    files = [p.relative_to(STATIC_DIR.parent).as_posix() for p in STATIC_DIR.rglob("*")
             if p.is_file()]  # fmt: skip
    assert {"static/index.html", "static/app.js", "static/style.css"} <= set(files)
    for rel in files:
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} not in package-data"
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert re.search(r"^COPY service/ service/$", dockerfile, re.MULTILINE)
    ignored = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]  # fmt: skip
    for rel in files:
        path = f"service/{rel}"
        hits = [pat for pat in ignored if fnmatch.fnmatch(path, pat.strip("/"))
                or fnmatch.fnmatch(Path(path).name, pat.removeprefix("**/"))]  # fmt: skip
        assert not hits, f".dockerignore excludes {path}: {hits}"
