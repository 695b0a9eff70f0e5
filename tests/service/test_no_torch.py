"""The serving install has no torch: importing and running the service must never import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

RUN_APP = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.modules["model"] = None
import io, time, warnings
from PIL import Image
from service.app import create_app
from service.settings import Settings
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
buf = io.BytesIO()
Image.new("RGB", (64, 48)).save(buf, "JPEG")
with TestClient(create_app(Settings(model_path=sys.argv[1]))) as c:
    while c.get("/health/ready").status_code != 200:
        time.sleep(0.01)
    assert c.post("/detect", content=buf.getvalue()).status_code == 200
    assert c.get("/metrics").status_code == 200
assert sys.modules["torch"] is None and sys.modules["model"] is None
print("ok")
"""


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_import_does_not_import_torch() -> None:
    code = ("import service.app, service.__main__, sys; "
            "assert 'torch' not in sys.modules and 'model' not in sys.modules")  # fmt: skip
    result = run(code)
    assert result.returncode == 0, result.stderr


def test_running_the_app_does_not_import_torch(tiny_onnx_path: Path) -> None:
    result = run(RUN_APP, str(tiny_onnx_path))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
