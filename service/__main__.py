"""`python -m service`: run the detector API with uvicorn (settings from DETECTOR_* env).

On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight requests finish
(at most DETECTOR_GRACEFUL_TIMEOUT_S), runs the app's shutdown, and the process exits 0.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings


def _after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the stop signal once it has shut down gracefully; by then there is
    nothing left to do, so the process returns normally (exit status 0)."""


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _after_graceful_shutdown)  # restored by uvicorn after its own
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler
        log_level=settings.log_level,
        access_log=False,  # service.access logs one JSON line per request instead
        timeout_graceful_shutdown=int(settings.graceful_timeout_s) or None,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
