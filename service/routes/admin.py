"""POST /admin/reload: rescan the model repository now, as SIGHUP does (opt-in:
DETECTOR_ADMIN_RELOAD; DETECTOR_ADMIN_TOKEN adds a bearer token)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request

from service.errors import NotFoundError, UnauthorizedError
from service.reload import Reloader, ReloadResponse
from service.schemas import ErrorResponse

router = APIRouter()

_RELOAD_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "DETECTOR_ADMIN_TOKEN is set and the bearer token is missing or wrong"),
        (404, "admin reload is disabled (DETECTOR_ADMIN_RELOAD=false, the default)"),
        (409, "a file could not be loaded (its older version, if any, keeps serving); every "
              "other change was applied"),
    )
}


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses=_RELOAD_ERRORS,
    summary="Rescan the model repository without downtime (opt-in, like SIGHUP)",
)
async def admin_reload(request: Request) -> ReloadResponse:
    settings = request.app.state.settings
    if not settings.admin_reload:
        raise NotFoundError("not found: admin reload is disabled (DETECTOR_ADMIN_RELOAD)")
    if settings.admin_token is not None:
        # RFC 7235: the scheme is case-insensitive ("bearer" is as good as "Bearer")
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        expected = settings.admin_token.get_secret_value()
        token_ok = hmac.compare_digest(given.strip().encode(), expected.encode())
        if not (token_ok and scheme.lower() == "bearer"):
            raise UnauthorizedError("a valid 'Authorization: Bearer <token>' header is required",
                                    headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    reloader: Reloader = request.app.state.reloader
    return await reloader.reload("admin")
