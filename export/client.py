"""A small typed client for the detector's HTTP API (httpx; sync and async), torch-free.

    from export.client import DetectorClient
    with DetectorClient("http://localhost:8000") as client:
        result = client.detect("photo.jpg", classes=["person", "car"])
        for d in result.detections:
            print(d.label, d.score, d.box)

The service may serve several models (a model repository): `client.models()` lists them with
their states, and `model="birds"` on a call (or on the client: the default of every call)
picks one (`?model=birds`; without it the service's default model answers). `client.model()`
describes the model the client's calls use (`client.model("birds")`: that one).

`AsyncDetectorClient` has the same methods as coroutines. Errors answered by the service raise
`DetectorAPIError` (status, code, message, retry_after); in `detect_batch` a failed image is a
`DetectorAPIError` in its place of the returned list. Needs httpx (`pip install
'fcos-detector[client]'`). The returned types live in export/client_types.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import quote

import httpx

from export.client_types import (
    Box,
    Detection,
    DetectorAPIError,
    DetectResult,
    ModelInfo,
    ModelStatus,
    error_from,
    parse_batch,
    parse_detect,
    parse_model,
    parse_models,
    parse_status,
    ready_model,
)

__all__ = [
    "AsyncDetectorClient", "Box", "DetectResult", "Detection", "DetectorAPIError",
    "DetectorClient", "ImageInput", "ModelInfo", "ModelStatus", "error_from", "read_image",
]  # fmt: skip

ImageInput = bytes | str | os.PathLike[str] | IO[bytes]


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
    model: str | None,
    score_threshold: float | None,
    max_detections: int | None,
    classes: Iterable[str] | None,
    timeout_ms: int | None = None,
    tile: str | int | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model, "score_threshold": score_threshold,
                              "max_detections": max_detections, "timeout_ms": timeout_ms,
                              "tile": tile}  # fmt: skip
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


def _model_call(name: str | None) -> _Call:
    """GET /model (the service's default model) or GET /models/{name}."""
    return _Call("GET", "/model" if name is None else f"/models/{quote(name, safe='')}", {})


def _model_info(name: str | None, body: dict[str, Any]) -> ModelInfo:
    return parse_model(body) if name is None else ready_model(parse_status(body))


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from(response)
    return response


def _reload_call(token: str | None) -> _Call:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return _Call("POST", "/admin/reload", {"headers": headers})


class DetectorClient:
    """Synchronous client. `model`: the model of every call that names none (None: the
    service's default model); `http`: an httpx.Client to use instead of a new one (its base
    URL)."""

    def __init__(self, base_url: str = "http://localhost:8000", timeout: float = 60.0,
                 http: httpx.Client | None = None, model: str | None = None) -> None:  # fmt: skip
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.default_model = model

    def _send(self, call: _Call) -> httpx.Response:
        return _checked(self._http.request(call.method, call.path, **call.kwargs))

    def detect(self, image: ImageInput, *, model: str | None = None,
               score_threshold: float | None = None, max_detections: int | None = None,
               classes: Iterable[str] | None = None, timeout_ms: int | None = None,
               tile: str | int | None = None) -> DetectResult:  # fmt: skip
        params = _params(model or self.default_model, score_threshold, max_detections, classes,
                         timeout_ms, tile)  # fmt: skip
        return parse_detect(self._send(_detect_call(image, params)).json())

    def detect_batch(self, images: Sequence[ImageInput], *, model: str | None = None,
                     score_threshold: float | None = None, max_detections: int | None = None,
                     classes: Iterable[str] | None = None, tile: str | int | None = None,
                     ) -> list[DetectResult | DetectorAPIError]:  # fmt: skip
        params = _params(model or self.default_model, score_threshold, max_detections, classes,
                         tile=tile)  # fmt: skip
        return parse_batch(self._send(_batch_call(images, params)).json())

    def annotate(self, image: ImageInput, *, model: str | None = None,
                 image_format: Literal["jpeg", "png"] = "jpeg",
                 score_threshold: float | None = None, classes: Iterable[str] | None = None,
                 ) -> bytes:  # fmt: skip
        """The image with the boxes drawn (JPEG or PNG bytes)."""
        params = _params(model or self.default_model, score_threshold, None, classes)
        return self._send(_detect_call(image, params, annotate=image_format)).content

    def models(self) -> list[ModelStatus]:
        """GET /models: every model of the service's repository, ready or not."""
        return parse_models(self._send(_Call("GET", "/models", {})).json())

    def model(self, name: str | None = None) -> ModelInfo:
        """The model `name`, else the client's `model`, else the service's default (GET /model,
        with its score_threshold). DetectorAPIError: 404 no such model, 503 not ready."""
        name = name or self.default_model
        return _model_info(name, self._send(_model_call(name)).json())

    def ready(self) -> bool:
        """GET /health/ready: the service's default model is ready."""
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
                 http: httpx.AsyncClient | None = None, model: str | None = None,
                 ) -> None:  # fmt: skip
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.default_model = model

    async def _send(self, call: _Call) -> httpx.Response:
        return _checked(await self._http.request(call.method, call.path, **call.kwargs))

    async def detect(self, image: ImageInput, *, model: str | None = None,
                     score_threshold: float | None = None, max_detections: int | None = None,
                     classes: Iterable[str] | None = None, timeout_ms: int | None = None,
                     tile: str | int | None = None) -> DetectResult:  # fmt: skip
        params = _params(model or self.default_model, score_threshold, max_detections, classes,
                         timeout_ms, tile)  # fmt: skip
        return parse_detect((await self._send(_detect_call(image, params))).json())

    async def detect_batch(self, images: Sequence[ImageInput], *, model: str | None = None,
                           score_threshold: float | None = None, max_detections: int | None = None,
                           classes: Iterable[str] | None = None, tile: str | int | None = None,
                           ) -> list[DetectResult | DetectorAPIError]:  # fmt: skip
        params = _params(model or self.default_model, score_threshold, max_detections, classes,
                         tile=tile)  # fmt: skip
        return parse_batch((await self._send(_batch_call(images, params))).json())

    async def annotate(self, image: ImageInput, *, model: str | None = None,
                       image_format: Literal["jpeg", "png"] = "jpeg",
                       score_threshold: float | None = None, classes: Iterable[str] | None = None,
                       ) -> bytes:  # fmt: skip
        params = _params(model or self.default_model, score_threshold, None, classes)
        return (await self._send(_detect_call(image, params, annotate=image_format))).content

    async def models(self) -> list[ModelStatus]:
        return parse_models((await self._send(_Call("GET", "/models", {}))).json())

    async def model(self, name: str | None = None) -> ModelInfo:
        name = name or self.default_model
        return _model_info(name, (await self._send(_model_call(name))).json())

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
