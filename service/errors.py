"""The one place where failures become HTTP statuses and `{"error": {"code", "message"}}` bodies.

Domain errors from `export.errors` (raised while decoding the image) and the service's own
errors (size limits, media type, queue, deadline, readiness) and FastAPI's request validation
errors are all mapped here. Each mapping also names the `outcome` label counted in
`detector_requests_total`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from export.errors import (
    DetectorError,
    EmptyInputError,
    ImageDecodeError,
    ImageTooLargeError,
    ModelMetadataError,
    UnsupportedImageTypeError,
)

OUTCOMES: tuple[str, ...] = (
    "ok", "bad_request", "too_large", "unsupported_media_type", "invalid_parameter",
    "overloaded", "timeout", "not_ready", "error",
)  # fmt: skip


class ServiceError(Exception):
    """An error raised by the service itself; subclasses fix status, code and outcome."""

    status: int = 500
    code: str = "internal_error"
    outcome: str = "error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequestError(ServiceError):
    status, code, outcome = 400, "bad_request", "bad_request"


class PayloadTooLargeError(ServiceError):
    status, code, outcome = 413, "payload_too_large", "too_large"


class UnsupportedMediaTypeError(ServiceError):
    status, code, outcome = 415, "unsupported_media_type", "unsupported_media_type"


class InvalidParameterError(ServiceError):
    status, code, outcome = 422, "invalid_parameter", "invalid_parameter"


class NotReadyError(ServiceError):
    status, code, outcome = 503, "not_ready", "not_ready"


class OverloadedError(ServiceError):
    status, code, outcome = 503, "overloaded", "overloaded"


class DeadlineExceededError(ServiceError):
    status, code, outcome = 504, "timeout", "timeout"


# export.errors class -> (HTTP status, outcome). Checked in order (most specific first).
DOMAIN_ERRORS: tuple[tuple[type[DetectorError], int, str], ...] = (
    (EmptyInputError, 400, "bad_request"),
    (ImageDecodeError, 400, "bad_request"),
    (UnsupportedImageTypeError, 415, "unsupported_media_type"),
    (ImageTooLargeError, 413, "too_large"),
    (ModelMetadataError, 503, "not_ready"),
    (DetectorError, 400, "bad_request"),
)


@dataclass(frozen=True)
class HttpError:
    status: int
    code: str
    message: str
    outcome: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def to_http_error(exc: Exception) -> HttpError:
    """Map any exception to its HTTP form (unknown exceptions -> 500 internal_error)."""
    if isinstance(exc, ServiceError):
        return HttpError(exc.status, exc.code, exc.message, exc.outcome, dict(exc.headers))
    if isinstance(exc, DetectorError):
        for cls, status, outcome in DOMAIN_ERRORS:
            if isinstance(exc, cls):
                return HttpError(status, exc.code, str(exc) or exc.code, outcome)
    if isinstance(exc, RequestValidationError):
        return HttpError(422, "invalid_parameter", _validation_message(exc), "invalid_parameter")
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        outcome = "bad_request" if exc.status_code < 500 else "error"
        return HttpError(exc.status_code, code, str(exc.detail), outcome, dict(exc.headers or {}))
    return HttpError(500, "internal_error", "internal server error", "error")


def record_outcome(request: Request, outcome: str) -> None:
    """Leave the outcome where the access middleware picks it up (shared ASGI scope state)."""
    request.state.outcome = outcome


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    err = to_http_error(exc)
    record_outcome(request, err.outcome)
    return err.response()


def install_error_handlers(app: FastAPI) -> None:
    """Handlers for the expected errors; anything else is answered by RequestContextMiddleware
    (also via `to_http_error`, as a 500 in the same shape)."""
    for exc_type in (ServiceError, DetectorError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(exc_type, _handle)
