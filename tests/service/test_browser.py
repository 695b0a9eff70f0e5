"""The demo page (GET /) driven in headless Chromium against the real service process.

Needs Debian's chromium and Playwright's Python package (`.ci/install-deploy-tools.sh`
installs both; never `playwright install`, which downloads browsers). Skips when either is
missing. The service runs as `python -m service` on a model repository (DETECTOR_MODEL_DIR):
`tiny-demo` (the default), a tiny model whose weights are tuned so that it does produce boxes
with a spread of scores (the default tiny model finds nothing); `second`, the same weights with
other class names and version; and `broken`, a file that fails to load.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.attacks.server import Server, ready_server
from service.annotate import class_color
from tests import TINY_CLASSES

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGE_DEFAULT_THRESHOLD = 0.40  # the slider starts at the service default (GET /model)
SECOND_CLASSES = ("bird", "car", "tree")  # the `second` model's classes
TIMEOUT_MS = 30_000


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright's Python package is not installed (.ci/install-deploy-tools.sh)",
    )
    exe = chromium_path()
    if exe is None:
        pytest.skip("no chromium (apt-get install chromium; .ci/install-deploy-tools.sh)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def export_demo_model(path: Path, class_names: tuple[str, ...], version: str) -> Path:
    """The tiny preset with perturbed weights, a sharper and lower class prior and larger
    boxes: ~50 detections >= 0.05 on the 640x480 test card, scores up to ~0.8."""
    torch = pytest.importorskip("torch", reason="building the test model needs torch")
    from export.exporter.onnx_export import export_onnx
    from model import FCOS, get_preset

    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=class_names)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        head = model.head
        head.cls_logits.weight.mul_(5.0)
        head.cls_logits.bias.add_(-10.0)
        head.centerness.weight.mul_(5.0)
        head.centerness.bias.add_(2.0)
        head.bbox_pred.bias.add_(1.0)
    return export_onnx(model, path, name=path.stem, version=version)


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model repository: tiny-demo.onnx (the default), second.onnx, broken.onnx."""
    folder = tmp_path_factory.mktemp("demo-models")
    export_demo_model(folder / "tiny-demo.onnx", TINY_CLASSES, "0.0.1")
    export_demo_model(folder / "second.onnx", SECOND_CLASSES, "0.0.2")
    (folder / "broken.onnx").write_bytes(b"not an onnx model")
    return folder


@pytest.fixture(scope="module")
def server(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ready_server(tmp_path_factory.mktemp("server"), demo_models / "tiny-demo.onnx",
                      clean_exit=False, DETECTOR_MODEL_DIR=str(demo_models),
                      DETECTOR_DEFAULT_MODEL="tiny-demo") as srv:  # fmt: skip
        deadline = time.monotonic() + 60  # ready follows the default model: wait for the rest
        while any(m["state"] == "loading" for m in httpx.get(srv.url + "/models").json()["models"]):
            assert time.monotonic() < deadline, "models still loading"
            time.sleep(0.1)
        yield srv


@pytest.fixture
def card_png(tmp_path: Path) -> Path:
    """A 640x480 synthetic test card as a PNG file (for the file picker and drag-and-drop)."""
    from export.exporter.parity import synthetic_image

    path = tmp_path / "test-card.png"
    synthetic_image(640, 480, seed=0).save(path)
    return path


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: problems.append(f"external request: {r.url}")
            if not r.url.startswith((server.url, "data:", "blob:")) else None)  # fmt: skip
    page.goto(server.url + "/")
    page.wait_for_selector('#model[data-ready="true"]')
    yield page
    context.close()
    # 4xx answers show up as console errors ("Failed to load resource"): only those are fine.
    unexpected = [p for p in problems if "status of 415" not in p]
    assert not unexpected, unexpected


def upload(page: Any, path: Path) -> dict[str, Any]:
    with page.expect_response(lambda r: "/detect?" in r.url) as response:
        page.set_input_files("#file", str(path))
    body: dict[str, Any] = response.value.json()
    page.wait_for_selector('body[data-state="done"]')
    return body


def drawn(page: Any) -> int:
    return int(page.get_attribute("#canvas", "data-drawn"))


def pixel(page: Any, x: float, y: float) -> tuple[int, int, int]:
    rgba = page.evaluate(
        "([x, y]) => Array.from(document.getElementById('canvas').getContext('2d')"
        ".getImageData(x, y, 1, 1).data)",
        [int(x), int(y)],
    )
    return rgba[0], rgba[1], rgba[2]


def canvas_checksum(page: Any) -> int:
    return int(page.evaluate(
        "() => { const c = document.getElementById('canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let s = 0;"
        " for (let i = 0; i < d.length; i += 1) s = (s * 31 + d[i]) % 1000000007; return s; }"
    ))  # fmt: skip


def test_upload_draw_filter_and_screenshot(page: Any, card_png: Path, tmp_path: Path) -> None:
    assert "tiny-demo 0.0.1" in page.inner_text("#model")
    body = upload(page, card_png)
    dets = body["detections"]
    assert body["image"] == {"width": 640, "height": 480, "tiles": 0}
    assert dets and dets[-1]["score"] >= 0.05, "the test model should find something"

    # the boxes at the page's default threshold are drawn, the best one on top
    expected = sum(d["score"] >= PAGE_DEFAULT_THRESHOLD for d in dets)
    assert drawn(page) == expected > 0
    assert page.inner_text("#count").startswith(f"{expected} of {len(dets)} detections")
    best = dets[0]
    x1, _, x2, y2 = best["box"]
    assert pixel(page, (x1 + x2) / 2, min(y2, 479)) == class_color(best["class_id"])
    with_boxes = canvas_checksum(page)
    assert page.locator("#detections tbody tr").count() == expected

    # timings and model shown
    timings = page.inner_text("#timings")
    for stage in ("decode", "preprocess", "inference", "postprocess", "server total"):
        assert stage in timings, timings

    page.screenshot(path=str(tmp_path / "demo-page.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'demo-page.png'}")

    # the slider re-filters without a new request
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    slider = page.locator("#threshold")
    slider.focus()
    page.keyboard.press("Home")  # the minimum, 0.05: everything returned
    assert page.get_attribute("#canvas", "data-threshold") == "0.05"
    assert drawn(page) == len(dets) > expected
    mid = sorted(d["score"] for d in dets)[len(dets) // 2]
    mid = round(mid + 0.005, 2)  # the slider's 0.01 step, just above the median score
    slider.fill(f"{mid:.2f}")
    assert drawn(page) == sum(d["score"] >= mid for d in dets)
    assert 0 < drawn(page) < len(dets)
    page.keyboard.press("End")  # 1.0: nothing left
    assert drawn(page) == sum(d["score"] >= 1.0 for d in dets) == 0
    assert canvas_checksum(page) != with_boxes  # the image alone
    slider.fill(f"{PAGE_DEFAULT_THRESHOLD:.2f}")
    assert drawn(page) == expected and canvas_checksum(page) == with_boxes
    assert not requests, f"moving the slider must not send requests: {requests}"

    page.screenshot(path=str(tmp_path / "demo-page-after-slider.png"), full_page=True)


def test_drop_download_and_errors(page: Any, card_png: Path, tmp_path: Path) -> None:
    # drag and drop (a synthetic drop event carrying the file)
    data = base64.b64encode(card_png.read_bytes()).decode()
    transfer = page.evaluate_handle(
        "(b64) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));"
        " const dt = new DataTransfer();"
        " dt.items.add(new File([bytes], 'dropped.png', { type: 'image/png' })); return dt; }",
        data,
    )
    with page.expect_response(lambda r: "/detect?" in r.url) as response:
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    assert response.value.ok
    page.wait_for_selector('body[data-state="done"]')
    assert drawn(page) > 0

    # the annotated JPEG (POST /detect?annotate=true) at the slider's threshold
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "annotated.jpg"
    download.value.save_as(saved)
    from PIL import Image

    with Image.open(saved) as img:
        assert (img.format, img.size) == ("JPEG", (640, 480))

    # a non-image: the service's JSON error message is shown
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector('body[data-state="error"]')
    error = page.inner_text("#error")
    assert "415" in error and "unsupported_media_type" in error
    assert "not an image in a supported format" in error
    assert drawn(page) == 0
    page.screenshot(path=str(tmp_path / "demo-page-error.png"), full_page=True)
    print(f"\nscreenshot: {tmp_path / 'demo-page-error.png'}")


def test_docs_render_offline(browser: Any, server: Server) -> None:
    """/docs draws Swagger UI with every asset from the service: requests to anywhere else
    are aborted (as on a machine without internet access) and must not be needed."""
    context = browser.new_context()
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/docs")
    path = page.wait_for_selector('.opblock-summary-path[data-path="/detect"]')  # POST /detect
    assert path is not None and path.is_visible()
    assert "FCOS detector" in page.inner_text(".swagger-ui .information-container")
    context.close()
    assert not outside and not errors, (outside, errors)


def table_labels(page: Any) -> list[str]:
    cells = page.query_selector_all("#detections tbody tr td:first-child")
    return [c.inner_text().strip() for c in cells]


def pick_only(page: Any, name: str) -> dict[str, Any]:
    page.click("#classes-none")
    page.wait_for_selector('#classes[data-picked=""]')
    with page.expect_response(lambda r: "/detect?" in r.url) as response:
        page.check(f'#class-list input[value="{name}"]')
    assert f"classes={name}" in response.value.url
    body: dict[str, Any] = response.value.json()
    page.wait_for_selector('body[data-state="done"]')
    return body


def test_class_picker(page: Any, card_png: Path) -> None:
    """The class picker lists the model's classes, sends `classes=` to /detect (and with the
    annotated download); canvas and table show only the picked classes."""
    names = page.eval_on_selector_all("#class-list input", "els => els.map((e) => e.value)")
    assert names == list(TINY_CLASSES)
    everything = upload(page, card_png)
    labels = {d["label"] for d in everything["detections"]}
    assert len(labels) >= 2, labels  # the demo model finds several classes on the test card
    target = sorted(labels)[0]

    body = pick_only(page, target)
    assert body["detections"] and {d["label"] for d in body["detections"]} == {target}
    shown = [d for d in body["detections"] if d["score"] >= 0.40]
    assert drawn(page) == len(shown)
    assert set(table_labels(page)) <= {target}

    with page.expect_request(lambda r: "annotate=true" in r.url) as request, page.expect_download():
        page.click("#download")
    assert f"classes={target}" in request.value.url

    page.click("#classes-none")
    page.wait_for_selector('#classes[data-picked=""]')
    assert drawn(page) == 0 and "No class picked" in page.inner_text("#status")
    with page.expect_response(lambda r: "/detect?" in r.url) as response:
        page.click("#classes-all")
    assert "classes=" not in response.value.url
    page.wait_for_selector('body[data-state="done"]')
    assert response.value.json()["detections"] == everything["detections"]


def test_model_picker(page: Any, card_png: Path, tmp_path: Path) -> None:
    """The picker lists the repository's models (the default picked, a failed one disabled);
    every request sends `model=`; picking another model asks again for the image with it, and
    the class list and the slider follow the picked model."""
    options = page.eval_on_selector_all(
        "#model-select option", "els => els.map((e) => [e.value, e.textContent, e.disabled])"
    )
    assert [(name, disabled) for name, _, disabled in options] == [
        ("broken", True), ("second", False), ("tiny-demo", False)]  # fmt: skip
    texts = {name: text for name, text, _ in options}
    assert texts["tiny-demo"] == "tiny-demo 0.0.1 · ready (default)"
    assert texts["second"] == "second 0.0.2 · ready" and texts["broken"] == "broken · failed"
    assert page.input_value("#model-select") == "tiny-demo"

    with page.expect_request(lambda r: "/detect?" in r.url) as request:
        first = upload(page, card_png)
    assert "model=tiny-demo" in request.value.url
    assert first["model"] == {"name": "tiny-demo", "version": "0.0.1"}
    page.fill("#threshold", "0.9")  # moved away from the default: picking a model resets it

    with page.expect_response(lambda r: "/detect?" in r.url) as response:
        page.select_option("#model-select", "second")
    assert "model=second" in response.value.url
    body = response.value.json()
    page.wait_for_selector('body[data-state="done"]')
    assert body["model"] == {"name": "second", "version": "0.0.2"}
    assert "second 0.0.2" in page.inner_text("#model")
    # the same weights under other names: the same boxes, the second model's labels
    assert [d["box"] for d in body["detections"]] == [d["box"] for d in first["detections"]]
    assert {d["label"] for d in body["detections"]} <= set(SECOND_CLASSES)
    names = page.eval_on_selector_all("#class-list input", "els => els.map((e) => e.value)")
    assert names == list(SECOND_CLASSES)
    assert page.input_value("#threshold") == f"{PAGE_DEFAULT_THRESHOLD:.1f}"
    assert drawn(page) == sum(d["score"] >= PAGE_DEFAULT_THRESHOLD for d in body["detections"])
    assert set(table_labels(page)) <= set(SECOND_CLASSES)
    page.screenshot(path=str(tmp_path / "demo-page-second-model.png"), full_page=True)

    # the class filter and the annotated download go to the picked model too
    target = sorted({d["label"] for d in body["detections"]})[0]
    assert pick_only(page, target)["model"]["name"] == "second"
    with page.expect_request(lambda r: "annotate=true" in r.url) as request, page.expect_download():
        page.click("#download")
    assert "model=second" in request.value.url and f"classes={target}" in request.value.url

    with page.expect_response(lambda r: "/detect?" in r.url) as response:
        page.select_option("#model-select", "tiny-demo")
    assert response.value.json()["model"]["name"] == "tiny-demo"
    assert "classes=" not in response.value.url  # a new model: every class again
