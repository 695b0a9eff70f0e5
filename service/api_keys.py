"""Optional API keys for the inference routes (DETECTOR_API_KEYS; off by default).

The setting is a file of keys (one per line; blank lines and `#` comments skipped; re-read on
every rescan, so SIGHUP rotates keys) or a comma list. A client sends its key as
`Authorization: Bearer <key>`, `X-API-Key: <key>` or, on the DeepStack routes, the `api_key`
form field. Keys are compared by their SHA-256 digests in constant time against every key (no
early exit), and never logged. A refusal is a 401 in the route's error shape, counted in
`detector_api_key_refusals_total{route, reason}` (reason: missing | wrong).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from pydantic import SecretStr
from starlette.datastructures import Headers

from service.errors import UnauthorizedError
from service.metrics import Metrics

log = logging.getLogger("service.api_keys")
MIN_KEY_LENGTH = 16  # shorter keys are accepted with a warning: guessable by brute force


class ApiKeys:
    def __init__(self, keys: list[str], path: Path | None = None) -> None:
        if not keys:
            raise ValueError("DETECTOR_API_KEYS holds no key")
        short = sum(len(k) < MIN_KEY_LENGTH for k in keys)
        if short:
            log.warning("%d API key(s) shorter than %d characters", short, MIN_KEY_LENGTH)
        self._digests = [_digest(k) for k in keys]
        self.path = path

    @classmethod
    def from_setting(cls, value: SecretStr | None) -> ApiKeys | None:
        """None when the setting is unset, else the keys it names (`read_setting`)."""
        return None if value is None else cls(*read_setting(value))

    def refresh(self) -> None:
        """Re-read the keys file (on a rescan); a file that became unusable keeps the keys."""
        if self.path is None:
            return
        try:
            self._digests = ApiKeys(read_keys(self.path))._digests
        except (OSError, ValueError) as exc:
            log.error("API keys not re-read, the previous keys stay: %s", exc)

    def matches(self, given: str) -> bool:
        digest = _digest(given)
        found = False
        for key in self._digests:  # every key, so the time does not say which one was close
            found |= hmac.compare_digest(digest, key)
        return found

    def check(self, given: str | None, route: str, metrics: Metrics) -> None:
        """UnauthorizedError (401) unless `given` is a key; counts the refusal."""
        if given and self.matches(given):
            return
        reason = "wrong" if given else "missing"
        metrics.key_refusals.labels(route=route, reason=reason).inc()
        ways = ("Authorization: Bearer <key>, X-API-Key or the api_key form field"
                if route == "deepstack" else "Authorization: Bearer <key> or X-API-Key")
        message = f"a valid API key is required ({ways})"
        raise UnauthorizedError(
            message if reason == "missing" else "API key not accepted",
            headers={"WWW-Authenticate": "Bearer"},
        )


def key_from_headers(headers: Headers) -> str | None:
    """The key of `Authorization: Bearer <key>` (scheme case-insensitive) or `X-API-Key`."""
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip() or None


def read_setting(value: SecretStr) -> tuple[list[str], Path | None]:
    """DETECTOR_API_KEYS -> (its keys, the keys file or None for a comma list). ValueError when
    it names no usable key (a path that does not exist is an error, never taken as a key)."""
    text = value.get_secret_value().strip()
    path = Path(text)
    if "," not in text and ("/" in text or path.is_file()):
        if not path.is_file():  # never echo the value: it may be a key with a '/' in it
            raise ValueError(
                "DETECTOR_API_KEYS names no readable keys file (a value with '/' and no ',' "
                "is a file path: a single key with '/' goes in a file or ends with ',')"
            )
        keys = read_keys(path)
    else:
        keys, path = [k.strip() for k in text.split(",") if k.strip()], None
    if not keys:
        raise ValueError("DETECTOR_API_KEYS holds no key")
    return keys, path


def read_keys(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
