"""Asking a running service to rescan its model repository after a promotion or a rollback:
POST /admin/reload (DETECTOR_ADMIN_RELOAD=true; DETECTOR_ADMIN_TOKEN as a bearer token) or a
SIGHUP to its process (service/reload.py). Standard library only."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from typing import Any


def reload_by_http(url: str, token: str | None = None, timeout_s: float = 120.0) -> dict[str, Any]:
    """POST <url>/admin/reload -> {"status": HTTP status, "response": its JSON (or text)}.

    The reply comes once the rescan is done (a model file that fails to load: 409, the older
    version serving on). OSError when the service cannot be reached."""
    request = urllib.request.Request(url.rstrip("/") + "/admin/reload", data=b"", method="POST")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = body.decode("utf-8", "replace")[:500]
    return {"via": "http", "status": status, "response": payload}


def reload_by_signal(pid: int) -> dict[str, Any]:
    """SIGHUP to `pid` (the rescan runs in the background). OSError when there is no such
    process or it is not ours."""
    os.kill(pid, signal.SIGHUP)
    return {"via": "SIGHUP", "pid": pid}


def request_reload(url: str | None, token: str | None, pid: int | None) -> dict[str, Any] | None:
    """The reload asked for (None: neither a URL nor a pid), or {"error": ...} when it failed."""
    try:
        if url:
            return reload_by_http(url, token)
        if pid is not None:
            return reload_by_signal(pid)
    except OSError as exc:
        return {"via": "http" if url else "SIGHUP", "error": str(exc)}
    return None


def reload_ok(result: dict[str, Any] | None) -> bool:
    return result is None or ("error" not in result and result.get("status", 200) == 200)
