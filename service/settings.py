"""Service settings, read from `DETECTOR_*` environment variables (pydantic-settings).

Thresholds: `score_threshold` is the API's threshold on the *final* detection score
(sqrt(class probability x centre-ness)); it filters the detections returned to the client.
The candidate cut inside `export.postprocess` (on the class probability alone, before NMS) is
always `score_threshold**2` (`candidate_config`): a score >= t implies a class probability
>= t**2, since centre-ness <= 1, so no detection that would pass is cut early.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from export import defaults
from export.backends import Backend, Precision
from export.repository import NAME, parse_pins
from export.runtime import Spinning
from export.tiling import parse_tile

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_PATH = REPO_ROOT / "models" / "default.onnx"
MiB = 1024 * 1024


def cgroup_cpu_limit(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The container's CPU quota in whole cores (cgroup v2 `cpu.max`), None when unlimited."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    """Cores this process may use: CPU affinity (cpusets), capped by a cgroup CPU quota
    (`docker run --cpus N`), so ONNX Runtime does not oversubscribe a limited container."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


class Settings(BaseSettings):
    """All knobs of the service; each field maps to `DETECTOR_<FIELD NAME IN CAPITALS>`."""

    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    model_path: Path = Field(
        DEFAULT_MODEL_PATH,
        description="ONNX file exported by `export`, served as a one-model repository named by "
        "its file stem (when DETECTOR_MODEL_DIR is unset)",
    )  # fmt: skip
    model_dir: Path | None = Field(
        None,
        description="model repository: every `NAME.onnx` in the folder (or Triton's "
        "`NAME/VERSION/model.onnx`, newest version) is served as model NAME; a rescan (SIGHUP, "
        "/admin/reload) loads added files, unloads removed ones and swaps changed ones",
    )  # fmt: skip
    default_model: str | None = Field(
        None,
        description="the model of requests that name none (default: `default`, else the only "
        "model); readiness follows it",
    )  # fmt: skip
    model_versions: str = Field(
        "", description="pinned versions of Triton-layout models, e.g. `cars:1,birds:3`"
    )
    max_models: int = Field(
        8, ge=1,
        description="models loaded at most (each holds its weights in memory); models past it "
        "are listed as refused",
    )  # fmt: skip
    host: str = Field("0.0.0.0", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="JSON log level"
    )
    access_log: bool = Field(True, description="one JSON line per request")

    score_threshold: float = Field(
        defaults.SCORE_THRESHOLD,
        ge=0.0,
        le=1.0,
        description="default API threshold (the default model's operating point)",
    )
    max_detections: int = Field(
        defaults.MAX_DETECTIONS, ge=1, le=1000, description="default cap per image"
    )
    nms_iou: float = Field(
        defaults.NMS_IOU,
        gt=0.0,
        le=1.0,
        description="class-wise NMS IoU (the evaluation's default)",
    )
    threads: int = Field(
        default_factory=default_threads,
        ge=1,
        description="intra-op threads of the model runtime (default: the cores this process "
        "may use: CPU affinity, capped by a cgroup CPU quota)",
    )  # fmt: skip
    workers: int = Field(
        default_factory=default_threads,
        ge=1,
        description="inference jobs run at once, each a whole request (decode, model, NMS); "
        "they share the `threads`; a model on OpenVINO's multi-stream engine runs one more, "
        "whose model call waits in OpenVINO's queue (default: the cores this process may use)",
    )  # fmt: skip
    spinning: Spinning = Field(
        "auto",
        description="ONNX Runtime's idle pool threads busy-wait for work (faster alone, slower "
        "beside a busy process); `auto` spins while runs keep their quiet speed",
    )  # fmt: skip
    backend: Backend = Field(
        "auto",
        description="model runtime: `auto` times the installed runtimes the model file's "
        "runtime_validation record declares valid (ONNX Runtime only without one) on a "
        "warm-up shape at load and serves the fastest; `onnxruntime` / `openvino` force one",
    )  # fmt: skip
    backend_trial_s: float = Field(
        3.0, ge=0.0, le=60.0,
        description="with DETECTOR_BACKEND=auto, seconds spent timing the candidate runtimes "
        "of a model file at load (all together, after their loads and warm-ups; counted in "
        "readiness)",
    )  # fmt: skip
    openvino_precision: Precision = Field(
        "bf16",
        description="OpenVINO's precision for the layers the INT8 file keeps in float (with "
        "DETECTOR_BACKEND=openvino; `auto` takes the configurations the file declares valid)",
    )  # fmt: skip
    tile: str = Field(
        "off",
        description="tiled inference for requests that do not say (`tile`): off, auto (tiles of "
        "~1.85x the input size plus, within DETECTOR_MAX_TILES, tiles of ~1.28x; only for "
        "images with a side of ~1000 px or more and a short side above 1.5x the input size) or "
        "N (N x N tiles)",
    )
    max_tiles: int = Field(
        16, ge=1, le=64,
        description="tiles per image at most (a larger grid is coarsened; `auto` leaves its "
        "fine level out)",
    )
    warmup: bool = Field(
        True, description="dummy inferences (square, 4:3, 3:4) before reporting ready"
    )
    model_load_timeout_s: float = Field(
        60.0, gt=0.0,
        description="a model file (at startup or reload) is first loaded and warmed up in a "
        "child process; one that takes longer is refused (the previous model keeps serving)",
    )  # fmt: skip
    model_load_memory_bytes: int = Field(
        1024 * MiB, ge=1,
        description="resident memory that child process may use (the bundled model: ~130 MiB); "
        "a file that needs more is refused",
    )  # fmt: skip

    max_upload_bytes: int = Field(10 * MiB, ge=1, description="request body limit")
    max_pixels: int = Field(
        defaults.MAX_PIXELS, ge=1,
        description="decoded width x height limit; images of more than 3 bytes per pixel "
        "(16-bit, float, RGBA) may decode to at most max_pixels x 3 bytes",
    )  # fmt: skip
    max_queue: int = Field(16, ge=0, description="requests waiting for the worker; then 503")
    request_timeout_s: float = Field(
        30.0, ge=0.0, description="deadline from arrival to result (0 = none); then 504"
    )
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with 503 overloaded")
    max_upload_memory_bytes: int = Field(
        256 * MiB, ge=1,
        description="request bodies held in memory at once (being received or waiting for the "
        "worker), all requests together; a request that would pass it gets 503 overloaded",
    )  # fmt: skip

    # Connections (what a reverse proxy would otherwise enforce; see docker/nginx.conf)
    body_timeout_s: float = Field(
        30.0, ge=0.0,
        description="the whole request body must arrive within this time after the headers "
        "(0 = no limit), else 408; no queue slot is held while it arrives",
    )  # fmt: skip
    header_timeout_s: float = Field(
        10.0, gt=0.0,
        description="a connection must send complete request headers within this time "
        "(after connecting or after its previous response), else it is closed",
    )  # fmt: skip
    keepalive_timeout_s: float = Field(
        5.0, gt=0.0, description="idle keep-alive connections are closed after this time"
    )
    max_connections: int = Field(
        256, ge=1,
        description="open connections at most (lowered to fit the open-file limit); "
        "connections beyond it get 503 and are closed at once",
    )  # fmt: skip
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, description="request line + headers size limit (larger: 431)"
    )
    graceful_timeout_s: float = Field(
        30.0, ge=0.0, description="on SIGTERM, how long in-flight requests may take to finish"
    )

    max_batch_images: int = Field(
        16, ge=1, description="images per request on POST /detect/batch and /v2 infer; then 413"
    )
    max_batch_bytes: int = Field(
        32 * MiB, ge=1, description="body limit of POST /detect/batch and /v2 infer (each "
        "image also obeys DETECTOR_MAX_UPLOAD_BYTES)",
    )  # fmt: skip
    admin_reload: bool = Field(
        False, description="enable POST /admin/reload (rescans the model repository, like SIGHUP)"
    )
    admin_token: SecretStr | None = Field(
        None, description="when set, POST /admin/reload needs `Authorization: Bearer <token>`"
    )
    api_keys: SecretStr | None = Field(
        None,
        description="API keys for the inference routes: a file of keys (one per line) or a "
        "comma list; sent as `Authorization: Bearer`, `X-API-Key` or the DeepStack `api_key` "
        "field (unset: the routes are open; health and /metrics always are)",
    )  # fmt: skip

    # Capture (service/capture.py): stores user images; off unless capture_dir is set
    capture_dir: Path | None = Field(
        None,
        description="capture: store images users send, with the detections as YOLO pre-labels "
        "and a JSON sidecar, in `DIR/<model>/<YYYY-MM-DD>/` (written off the request path; "
        "unset: off, nothing is stored)",
    )  # fmt: skip
    capture_models: str = Field(
        "", description="capture only these models, e.g. `cars,birds` (empty: every model)"
    )
    capture_sample_rate: float = Field(
        0.0, ge=0.0, le=1.0,
        description="fraction of the other requests' images captured at random (reason "
        "`sample`)",
    )  # fmt: skip
    capture_unsure_low: float = Field(
        0.2, ge=0.0, le=1.0,
        description="capture an image whose best score lies in [low, high) (reason `unsure`); "
        "the scores are those the client got, after the request's threshold",
    )  # fmt: skip
    capture_unsure_high: float = Field(
        0.5, ge=0.0, le=1.0, description="upper end of the unsure band (low = high: no band)"
    )
    capture_empty: bool = Field(
        True, description="capture an image with no detection at all (reason `empty`)"
    )
    capture_max_per_minute: int = Field(
        60, ge=0,
        description="captures per model in any 60 s at most (0 = no cap); more are dropped",
    )  # fmt: skip
    capture_max_bytes: int = Field(
        1024 * MiB, ge=1,
        description="disk budget of the capture folder: the oldest captures are removed to "
        "make room for a new one",
    )  # fmt: skip
    capture_queue: int = Field(
        64, ge=1,
        description="captures waiting for the writer at most (each holds its image in memory); "
        "more are dropped",
    )  # fmt: skip

    @field_validator("tile")
    @classmethod
    def _tile(cls, value: str) -> str:
        return str(parse_tile(value))  # ValueError -> a settings error naming the values

    @field_validator("model_versions")
    @classmethod
    def _pins(cls, value: str) -> str:
        parse_pins(value)  # ValueError -> a settings error
        return value

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        from service.api_keys import read_setting  # (it imports the metrics, not the settings)

        try:
            if value is not None:
                read_setting(value)  # a keys file must exist and hold a key
        except OSError as exc:
            raise ValueError(f"API keys file not readable: {exc.strerror}") from None
        return value

    @field_validator("capture_models")
    @classmethod
    def _capture_models(cls, value: str) -> str:
        if any(not NAME.match(n.strip()) for n in value.split(",") if n.strip()):
            raise ValueError("a comma list of model names (1-64 letters, digits, '.', '_', '-')")
        return value

    @model_validator(mode="after")
    def _unsure_band(self) -> Settings:
        if self.capture_unsure_low > self.capture_unsure_high:
            raise ValueError("capture_unsure_low must not be above capture_unsure_high")
        return self

    @field_validator("default_model")
    @classmethod
    def _default_model(cls, value: str | None) -> str | None:
        if value is not None and not NAME.match(value):
            raise ValueError("a model name is 1-64 letters, digits, '.', '_' or '-'")
        return value


def model_display_path(path: Path) -> str:
    """The model path for logs: relative to the repo when inside it (as given when it cannot be
    resolved: Python 3.11's `Path.resolve` raises RuntimeError on a symlink loop)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError, RuntimeError):
        return str(path)
