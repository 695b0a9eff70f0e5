"""The one place where failures become HTTP statuses and `{"error": {"code", "message"}}` bodies.

Domain errors from `export.errors` (raised while decoding the image) and the service's own
errors (size limits, media type, queue, deadline, readiness) and FastAPI's request validation
errors are all mapped here. Each service error class also names the `outcome` label counted
in `detector_requests_total`; the status -> outcome map (`outcome_for`) is derived from them.
Messages sent to clients never carry library internals or file paths: the underlying
exception (`__cause__`) is logged instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from export.errors import (
    DeadlinePassedError,
    DetectorError,
    EmptyInputError,
    ImageDecodeError,
    ImageTooLargeError,
    ModelMetadataError,
    UnsupportedImageTypeError,
)

log = logging.getLogger("service.errors")


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


class HeadersTooLargeError(ServiceError):
    status, code, outcome = 431, "headers_too_large", "bad_request"


class InvalidParameterError(ServiceError):
    status, code, outcome = 422, "invalid_parameter", "invalid_parameter"


class NotReadyError(ServiceError):
    status, code, outcome = 503, "not_ready", "not_ready"


class ShuttingDownError(ServiceError):
    status, code, outcome = 503, "shutting_down", "not_ready"


class OverloadedError(ServiceError):
    status, code, outcome = 503, "overloaded", "overloaded"


class RequestTimeoutError(ServiceError):
    """The client did not send its body in time (DETECTOR_BODY_TIMEOUT_S)."""

    status, code, outcome = 408, "request_timeout", "body_timeout"


class DeadlineExceededError(ServiceError):
    status, code, outcome = 504, "timeout", "timeout"


class NotFoundError(ServiceError):
    """No such model (`?model=`, /models/{name}, /v2/models/{name}) or a disabled route."""

    status, code, outcome = 404, "not_found", "bad_request"


class UnauthorizedError(ServiceError):
    """A missing or wrong API key (DETECTOR_API_KEYS) or admin token."""

    status, code, outcome = 401, "unauthorized", "unauthorized"


class ReloadFailedError(ServiceError):
    """The new model file cannot be loaded: the previous model keeps serving."""

    status, code, outcome = 409, "reload_failed", "error"


# Later classes win for a shared status (503 -> "overloaded" when nothing more is known).
_SERVICE_ERRORS: tuple[type[ServiceError], ...] = (
    BadRequestError, RequestTimeoutError, PayloadTooLargeError, UnsupportedMediaTypeError,
    HeadersTooLargeError, InvalidParameterError, NotReadyError, ShuttingDownError, OverloadedError,
    DeadlineExceededError, NotFoundError, UnauthorizedError, ReloadFailedError,
)  # fmt: skip
_OUTCOME_BY_STATUS: dict[int, str] = {200: "ok"} | {c.status: c.outcome for c in _SERVICE_ERRORS}
OUTCOMES: tuple[str, ...] = tuple(
    dict.fromkeys(["ok", *(c.outcome for c in _SERVICE_ERRORS), "error"])
)


def outcome_for(status: int) -> str:
    """The outcome label of a response status (when no handler recorded a more precise one)."""
    return _OUTCOME_BY_STATUS.get(status, "bad_request" if 400 <= status < 500 else "error")


# export.errors class -> the service error it is answered as. Checked in order (most specific
# first); the domain error's own `code` is kept.
DOMAIN_ERRORS: tuple[tuple[type[DetectorError], type[ServiceError]], ...] = (
    (DeadlinePassedError, DeadlineExceededError),
    (EmptyInputError, BadRequestError),
    (ImageDecodeError, BadRequestError),
    (UnsupportedImageTypeError, UnsupportedMediaTypeError),
    (ImageTooLargeError, PayloadTooLargeError),
    (ModelMetadataError, NotReadyError),
    (DetectorError, BadRequestError),
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
        for cls, answer in DOMAIN_ERRORS:
            if isinstance(exc, cls):
                return HttpError(answer.status, exc.code, str(exc) or exc.code, answer.outcome)
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
    if exc.__cause__ is not None:  # the library's own words stay in the log
        log.info(
            "request refused: %s", err.message,
            extra={"request_id": getattr(request.state, "request_id", None),
                   "status": err.status, "cause": f"{type(exc.__cause__).__name__}: "
                   f"{exc.__cause__}"},
        )  # fmt: skip
    return err.response()


def install_error_handlers(app: FastAPI) -> None:
    """Handlers for the expected errors; anything else is answered by RequestContextMiddleware
    (also via `to_http_error`, as a 500 in the same shape)."""
    for exc_type in (ServiceError, DetectorError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(exc_type, _handle)
