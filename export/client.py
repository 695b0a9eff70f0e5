"""A small typed client for the detector's HTTP API (httpx; sync and async), torch-free.

    from export.client import DetectorClient
    with DetectorClient("http://localhost:8000") as client:
        result = client.detect("photo.jpg", classes=["person", "car"])
        for d in result.detections:
            print(d.label, d.score, d.box)

`AsyncDetectorClient` has the same methods as coroutines. Errors answered by the service raise
`DetectorAPIError` (status, code, message, retry_after); in `detect_batch` a failed image is a
`DetectorAPIError` in its place of the returned list. Needs httpx (`pip install
'fcos-detector[client]'`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import httpx

ImageInput = bytes | str | os.PathLike[str] | IO[bytes]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: Box  # x1, y1, x2, y2 in original-image pixels


@dataclass(frozen=True)
class DetectResult:
    detections: list[Detection]
    width: int
    height: int
    model_name: str
    model_version: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    tiles: int = 0  # tiles run through the model (tiled inference; 0: untiled)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    preset: str
    precision: str
    classes: list[str]
    input_size: int


class DetectorAPIError(Exception):
    """An error answered by the service: `{"error": {"code", "message"}}` and its status."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class _Call:
    """One HTTP request, described (method, path, httpx keyword arguments)."""

    method: str
    path: str
    kwargs: dict[str, Any]


def read_image(image: ImageInput) -> bytes:
    """Bytes as they are; a path is read; a binary file object is read to its end."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    return image.read()


def _params(
    score_threshold: float | None,
    max_detections: int | None,
    classes: Iterable[str] | None,
    timeout_ms: int | None = None,
    tile: str | int | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"score_threshold": score_threshold, "max_detections": max_detections,
                              "timeout_ms": timeout_ms, "tile": tile}  # fmt: skip
    if classes is not None:
        params["classes"] = ",".join(classes)
    return {k: v for k, v in params.items() if v is not None}


def _detect_call(image: ImageInput, params: dict[str, Any], annotate: str | None = None) -> _Call:
    if annotate is not None:
        params = {**params, "annotate": "true", "format": annotate}
    return _Call("POST", "/detect", {
        "content": read_image(image), "params": params,
        "headers": {"content-type": "application/octet-stream"},
    })  # fmt: skip


def _batch_call(images: Sequence[ImageInput], params: dict[str, Any]) -> _Call:
    files = [("image", (f"image-{i}", read_image(im), "application/octet-stream"))
             for i, im in enumerate(images)]  # fmt: skip
    return _Call("POST", "/detect/batch", {"files": files, "params": params})


def error_from(response: httpx.Response) -> DetectorAPIError:
    try:
        err = response.json()["error"]
        code, message = (err["code"], err["message"]) if isinstance(err, dict) else ("error", err)
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", response.text[:500]
    retry = response.headers.get("retry-after")
    return DetectorAPIError(response.status_code, str(code), str(message),
                            float(retry) if retry and retry.isdigit() else None)  # fmt: skip


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from(response)
    return response


def parse_detect(body: dict[str, Any]) -> DetectResult:
    dets = [Detection(d["label"], int(d["class_id"]), float(d["score"]),
                      (d["box"][0], d["box"][1], d["box"][2], d["box"][3]))
            for d in body["detections"]]  # fmt: skip
    return DetectResult(dets, body["image"]["width"], body["image"]["height"],
                        body["model"]["name"], body["model"]["version"],
                        dict(body.get("timings_ms", {})),
                        int(body["image"].get("tiles", 0)))  # fmt: skip


def parse_batch(body: dict[str, Any]) -> list[DetectResult | DetectorAPIError]:
    out: list[DetectResult | DetectorAPIError] = []
    for item in body["results"]:
        if item.get("result") is not None:
            out.append(parse_detect(item["result"]))
        else:
            err = item["error"]
            out.append(DetectorAPIError(item["status"], err["code"], err["message"]))
    return out


def parse_model(body: dict[str, Any]) -> ModelInfo:
    return ModelInfo(body["name"], body["version"], body["preset"], body["precision"],
                     list(body["classes"]), int(body["input_size"]))  # fmt: skip


def _reload_call(token: str | None) -> _Call:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return _Call("POST", "/admin/reload", {"headers": headers})


class DetectorClient:
    """Synchronous client. `http`: an httpx.Client to use instead of a new one (its base URL)."""

    def __init__(self, base_url: str = "http://localhost:8000", timeout: float = 60.0,
                 http: httpx.Client | None = None) -> None:  # fmt: skip
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)

    def _send(self, call: _Call) -> httpx.Response:
        return _checked(self._http.request(call.method, call.path, **call.kwargs))

    def detect(self, image: ImageInput, *, score_threshold: float | None = None,
               max_detections: int | None = None, classes: Iterable[str] | None = None,
               timeout_ms: int | None = None, tile: str | int | None = None,
               ) -> DetectResult:  # fmt: skip
        params = _params(score_threshold, max_detections, classes, timeout_ms, tile)
        return parse_detect(self._send(_detect_call(image, params)).json())

    def detect_batch(self, images: Sequence[ImageInput], *, score_threshold: float | None = None,
                     max_detections: int | None = None, classes: Iterable[str] | None = None,
                     tile: str | int | None = None,
                     ) -> list[DetectResult | DetectorAPIError]:  # fmt: skip
        params = _params(score_threshold, max_detections, classes, tile=tile)
        return parse_batch(self._send(_batch_call(images, params)).json())

    def annotate(self, image: ImageInput, *, image_format: Literal["jpeg", "png"] = "jpeg",
                 score_threshold: float | None = None, classes: Iterable[str] | None = None,
                 ) -> bytes:  # fmt: skip
        """The image with the boxes drawn (JPEG or PNG bytes)."""
        params = _params(score_threshold, None, classes)
        return self._send(_detect_call(image, params, annotate=image_format)).content

    def model(self) -> ModelInfo:
        return parse_model(self._send(_Call("GET", "/model", {})).json())

    def ready(self) -> bool:
        return self._http.get("/health/ready").status_code == 200

    def reload(self, token: str | None = None) -> dict[str, Any]:
        """POST /admin/reload (enabled with DETECTOR_ADMIN_RELOAD=true)."""
        result: dict[str, Any] = self._send(_reload_call(token)).json()
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DetectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncDetectorClient:
    """The same API as `DetectorClient`, as coroutines (httpx.AsyncClient)."""

    def __init__(self, base_url: str = "http://localhost:8000", timeout: float = 60.0,
                 http: httpx.AsyncClient | None = None) -> None:  # fmt: skip
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def _send(self, call: _Call) -> httpx.Response:
        return _checked(await self._http.request(call.method, call.path, **call.kwargs))

    async def detect(self, image: ImageInput, *, score_threshold: float | None = None,
                     max_detections: int | None = None, classes: Iterable[str] | None = None,
                     timeout_ms: int | None = None, tile: str | int | None = None,
                     ) -> DetectResult:  # fmt: skip
        params = _params(score_threshold, max_detections, classes, timeout_ms, tile)
        return parse_detect((await self._send(_detect_call(image, params))).json())

    async def detect_batch(self, images: Sequence[ImageInput], *,
                           score_threshold: float | None = None, max_detections: int | None = None,
                           classes: Iterable[str] | None = None, tile: str | int | None = None,
                           ) -> list[DetectResult | DetectorAPIError]:  # fmt: skip
        params = _params(score_threshold, max_detections, classes, tile=tile)
        return parse_batch((await self._send(_batch_call(images, params))).json())

    async def annotate(self, image: ImageInput, *, image_format: Literal["jpeg", "png"] = "jpeg",
                       score_threshold: float | None = None, classes: Iterable[str] | None = None,
                       ) -> bytes:  # fmt: skip
        params = _params(score_threshold, None, classes)
        return (await self._send(_detect_call(image, params, annotate=image_format))).content

    async def model(self) -> ModelInfo:
        return parse_model((await self._send(_Call("GET", "/model", {}))).json())

    async def ready(self) -> bool:
        return (await self._http.get("/health/ready")).status_code == 200

    async def reload(self, token: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = (await self._send(_reload_call(token))).json()
        return result

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncDetectorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
