"""Property-based run over the OpenAPI spec (schemathesis): no 5xx except the documented 503
(and 504 when the case itself set `timeout_ms`), and every response conforms to the spec
(status documented, content type, body schema)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings

from service.app import create_app
from service.settings import Settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.python.asgi import get_client  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
)

from tests import wait_until  # noqa: E402

EXAMPLES_PER_OPERATION = 250  # /detect; the GETs take no input (one case each)


# The spec does not depend on settings: build it from an app that is never started.
schema = schemathesis.openapi.from_dict(create_app(Settings(model_path="unused.onnx")).openapi())


@pytest.fixture(scope="module")
def live_app(tiny_onnx_path: Path) -> FastAPI:
    """The app under test; schemathesis' in-process client runs its lifespan."""
    app = create_app(Settings(model_path=tiny_onnx_path, threads=1, max_upload_bytes=1024 * 1024))
    with get_client(app) as client:  # starts the lifespan (kept until the process exits)
        wait_until(lambda: client.get("http://testserver/health/ready").status_code == 200, 30,
                   what="model not ready")  # fmt: skip
    return app


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    database=None,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_openapi_conformance(case: schemathesis.Case, live_app: FastAPI) -> None:
    response = case.call(app=live_app)
    status = response.status_code
    body = response.json() if status >= 500 else {}
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    v2_unavailable = case.path.startswith("/v2") and (  # the protocol's own body shapes
        body == {"ready": False} or isinstance(error, str)
    )
    deepstack_unavailable = case.path.startswith("/v1/vision/") and body.get("code") == 503
    own_shape = v2_unavailable or deepstack_unavailable  # the routes' own error bodies
    documented = (status == 503 and (code in ("not_ready", "overloaded") or own_shape)) or (
        status == 504 and "timeout_ms" in (case.query or {})  # the client's own deadline
    )
    assert status < 500 or documented, response.text
    # Random bytes are valid per the schema (type: binary) yet not an image: 4xx is right.
    excluded = [not_a_server_error, positive_data_acceptance, unsupported_method]
    if case.media_type == "multipart/form-data" and case.path == "/detect/batch":
        # One `image` part is a valid list of one image: multipart cannot tell "a value" from
        # "an array of one", so a "wrong type" negative case is a valid request there.
        excluded.append(negative_data_rejection)
    case.validate_response(response, excluded_checks=excluded)
