"""`python -m service`: run the detector API with uvicorn.

Settings come from `DETECTOR_*` environment variables (service/settings.py); the flags below
override them. On SIGTERM (or SIGINT) uvicorn stops accepting connections, lets in-flight
requests finish (at most DETECTOR_GRACEFUL_TIMEOUT_S), answers what is left with a JSON 503,
runs the app's shutdown, and the process exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.connections import uvicorn_options
from service.logs import configure_logging
from service.settings import Settings

# flag -> Settings field (the flags a newcomer reaches for; everything else is env-only)
FLAGS: dict[str, tuple[str, str]] = {  # flag -> (Settings field, metavar)
    "--host": ("host", "ADDR"),
    "--port": ("port", "PORT"),
    "--model": ("model_path", "PATH"),
    "--model-dir": ("model_dir", "DIR"),
    "--default-model": ("default_model", "NAME"),
    "--threads": ("threads", "N"),
    "--workers": ("workers", "N"),
    "--backend": ("backend", "NAME"),
    "--log-level": ("log_level", "LEVEL"),
}


def _env_name(field: str) -> str:
    return Settings.model_config.get("env_prefix", "") + field.upper()


def build_parser() -> argparse.ArgumentParser:
    fields = Settings.model_fields
    settings_help = "\n".join(
        f"  {_env_name(name):<34} {f.description or ''}"
        + ("" if f.default_factory else f" (default: {f.default})")
        for name, f in fields.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the FCOS detector API (POST /detect, /metrics, /health/*, /docs).",
        epilog="Every setting is an environment variable; a flag wins over its variable:\n"
        + settings_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, (name, metavar) in FLAGS.items():
        parser.add_argument(flag, dest=name, default=None, metavar=metavar,
                            help=f"{fields[name].description} (env {_env_name(name)})")  # fmt: skip
    return parser


def settings_from_args(argv: Sequence[str] | None = None) -> Settings:
    """Settings from the environment, overridden by the flags in `argv`."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        parser.error(str(exc))


def _after_graceful_shutdown(signum: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the stop signal once it has shut down gracefully; by then there is
    nothing left to do, so the process returns normally (exit status 0)."""


def main(argv: Sequence[str] | None = None) -> int:
    settings = settings_from_args(argv)
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
        **uvicorn_options(settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
