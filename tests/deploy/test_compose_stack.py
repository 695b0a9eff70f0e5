"""docker-compose.yml's stack up for real: Docker Compose v2 against podman's Docker-compatible
socket (`podman system service`), profile `scale` with several detector replicas behind nginx,
Prometheus scraping every replica, traffic spread across them, and one replica killed and
replaced while traffic flows. Prometheus and nginx are stand-ins built from Debian packages
(docker/stand-in/build-images.sh) tagged as the compose file names them. Grafana has no Debian
package: it is not started here, its provisioning is validated as files (test_compose.py,
test_dashboard.py). The detectors serve a models folder bind-mounted from the host (a copy of
the bundled model here, DETECTOR_MODELS_HOST_DIR): a model copied in is served by every replica
after `docker compose kill -s HUP`, as the compose file's header says. Figures go to
$FCOS_CONTAINER_FIGURES when set."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter

import pytest

from tests.deploy.helpers import COMPOSE_FILE, REPO, compose_command, http_status
from tests.deploy.podman import (
    DETECTOR_TAG,
    build_detector,
    compose_config,
    engine_env,
    ensure_stand_ins,
    photos,
    podman,
    qualified,
    record,
    require_podman,
)

pytestmark = pytest.mark.slow
PROJECT = "fcos-smoke"
REPLICAS = 3
# this test's loopback ports; the compose file publishes on them through its own variables
PORTS = {"DETECTOR_PUBLISH_PORT": "18410", "PROMETHEUS_PUBLISH_PORT": "18411",
         "LB_PUBLISH_PORT": "18412", "GRAFANA_PUBLISH_PORT": "18413"}  # fmt: skip
# 2 shared cores: one thread and one worker per replica
STACK_ENV = {**PORTS, "DETECTOR_REPLICAS": str(REPLICAS), "DETECTOR_THREADS": "1",
             "DETECTOR_WORKERS": "1", "DETECTOR_CPUS": "1"}  # fmt: skip
SCALE_NAME = "detector-replica"  # the service nginx's upstream resolves
NGINX_FAIL_TIMEOUT_S = 5  # docker/nginx.conf: max_fails=2 fail_timeout=5s
SERVICES = [SCALE_NAME, "lb", "prometheus"]  # + `detector` (Prometheus depends on it)


def _published(service: dict) -> str:
    (port,) = service["ports"]
    return f"http://127.0.0.1:{port['published']}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_podman()
    tmp = tmp_path_factory.mktemp("stack")
    # the model repository the detectors mount read-only: the bundled model, readable by the
    # container's uid (pytest's temporary folders are 0700)
    models = tmp / "models"
    models.mkdir()
    shutil.copyfile(REPO / "models" / "default.onnx", models / "default.onnx")
    models.chmod(0o755)
    (models / "default.onnx").chmod(0o644)
    stack_env = {**STACK_ENV, "DETECTOR_MODELS_HOST_DIR": str(models)}
    cfg = compose_config(tmp, "scale", env=stack_env)["services"]
    seconds = ensure_stand_ins(prometheus=cfg["prometheus"]["image"], nginx=cfg["lb"]["image"])
    if seconds > 5:  # built now, not found
        record(stand_in_prometheus_nginx_s=round(seconds, 1))
    build_detector()
    # podman's Docker API looks short names up as docker.io/library/NAME
    podman("tag", DETECTOR_TAG, qualified(cfg[SCALE_NAME]["image"]))
    sock = tmp / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               env=engine_env(), stderr=subprocess.DEVNULL)  # fmt: skip
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp),
           "DOCKER_HOST": f"unix://{sock}", **stack_env}  # fmt: skip
    argv = [*compose_command(), "-f", str(COMPOSE_FILE), "-p", PROJECT, "--profile", "scale"]

    def compose(*args: str, timeout: float = 600) -> str:
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, env=env, cwd=REPO,
                              timeout=timeout)  # fmt: skip
        assert proc.returncode == 0, f"compose {' '.join(args)}:\n{proc.stderr[-3000:]}"
        return proc.stdout

    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        t0 = time.monotonic()
        compose("up", "--detach", "--no-build", *SERVICES)
        lb, prom = _published(cfg["lb"]), _published(cfg["prometheus"])
        assert _wait(lambda: http_status(f"{lb}/health/ready") == 200, 120), compose("logs")
        record(stack_up_s=round(time.monotonic() - t0, 1), replicas=REPLICAS)
        yield {"compose": compose, "lb": lb, "prom": prom, "nginx_image": cfg["lb"]["image"],
               "models": models}  # fmt: skip
    finally:
        subprocess.run([*argv, "down", "--volumes", "--timeout", "5"], env=env, cwd=REPO,
                       capture_output=True, timeout=300)  # fmt: skip
        service.terminate()
        service.wait(timeout=30)


def _wait(ok, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ok():
            return True
        time.sleep(0.5)
    return False


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _targets(prom: str) -> dict[str, list[tuple[str, str]]]:
    """job -> [(instance, health)] of Prometheus's active targets."""
    out: dict[str, list[tuple[str, str]]] = {}
    for t in _get_json(f"{prom}/api/v1/targets?state=active")["data"]["activeTargets"]:
        out.setdefault(t["labels"]["job"], []).append((t["labels"]["instance"], t["health"]))
    return out


def _replicas_up(prom: str, n: int) -> bool:
    """n replicas scraped, and each with every model ready (scraped is not ready: a replica
    still loading answers 503, and nginx then sets it aside for fail_timeout)."""
    targets = _targets(prom)
    replicas = targets.get("detector-replicas", [])
    scraped = replicas + targets.get("detector", [])
    if len(replicas) != n or any(h != "up" for _, h in scraped):
        return False
    q = urllib.parse.quote('min by (instance) (detector_model_ready{job="detector-replicas"})')
    ready = _get_json(f"{prom}/api/v1/query?query={q}")["data"]["result"]
    up = {instance for instance, _ in replicas}
    return {r["metric"]["instance"] for r in ready if float(r["value"][1]) == 1} == up


def _per_instance(prom: str) -> dict[str, float]:
    q = urllib.parse.quote('sum by (instance) (detector_requests_total{job="detector-replicas"})')
    result = _get_json(f"{prom}/api/v1/query?query={q}")["data"]["result"]
    return {r["metric"]["instance"]: float(r["value"][1]) for r in result}


def _detect(lb: str, body: bytes) -> int:
    req = urllib.request.Request(f"{lb}/detect", data=body, method="POST",
                                 headers={"Content-Type": "image/jpeg"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def _lb_log(compose) -> str:
    return compose("logs", "--no-color", "lb")


def _nginx_retries(log: str) -> list[str]:
    """nginx's log lines of requests passed to a second replica (two upstream statuses): the
    retries docker/nginx.conf documents (proxy_next_upstream)."""
    return [line for line in log.splitlines() if re.search(r"upstream_status=\S+, ", line)]


def _refused_retries(log: str, victim_ips: list[str]) -> list[str]:
    """Access-log lines of requests lost to nginx/nginx#1656 (open): their first try went to the
    killed replica and timed out connecting (its address answers nothing), nginx re-resolved the
    replicas meanwhile (DNS dropped the victim), and a retry that spans a re-resolution finds
    "no live upstreams" whatever replicas are up, so nginx answers 502."""
    ips = "|".join(re.escape(ip) for ip in victim_ips)
    lost = re.compile(rf'" 502 \d+ rid=\S+ upstream=(?:{ips}):\d+, detector_replicas '
                      r"upstream_status=\d+, 502 ")  # fmt: skip
    return [line for line in log.splitlines() if lost.search(line)]


def _error_kinds(log: str) -> dict[str, str]:
    """nginx's [warn] and worse lines by kind (the message without times, ids and addresses):
    "count x first line" each, so a DNS failure is not hidden behind thousands of 502s."""
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for line in log.splitlines():
        if re.search(r"\[(warn|error|crit|alert|emerg)\]", line):
            message = line.split("]", 2)[-1].split(", client:")[0]
            kind = re.sub(r"[\d.:*#]+", "N", message).strip()
            counts[kind] += 1
            first.setdefault(kind, line)
    return {kind: f"{n} x {first[kind]}" for kind, n in counts.items()}


def test_nginx_t_in_the_nginx_stand_in(stack):
    """`nginx -t` on docker/nginx.conf by the nginx the stack runs (test_compose.py's
    `test_nginx_t` skips where no nginx >= 1.27.3 is installed on the host)."""
    conf = REPO / "docker" / "nginx.conf"
    proc = podman("run", "--rm", "--volume", f"{conf}:/etc/nginx/nginx.conf:ro",
                  qualified(stack["nginx_image"]), "nginx", "-t", check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_prometheus_scrapes_every_replica(stack):
    assert _wait(lambda: _replicas_up(stack["prom"], REPLICAS), 90), _targets(stack["prom"])


def test_traffic_through_nginx_is_spread_across_replicas(stack):
    assert _wait(lambda: _replicas_up(stack["prom"], REPLICAS), 90), _targets(stack["prom"])
    time.sleep(NGINX_FAIL_TIMEOUT_S)  # a replica nginx set aside while it loaded is back
    before = _per_instance(stack["prom"])
    pics = [p.read_bytes() for p in photos(6)]
    n = 4 * REPLICAS
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda i=i: statuses.extend(
        _detect(stack["lb"], pics[(i + k) % len(pics)]) for k in range(n // 2)))
        for i in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * n, Counter(statuses)

    def counted() -> dict[str, float]:
        after = _per_instance(stack["prom"])
        return {i: v - before.get(i, 0.0) for i, v in after.items()}

    assert _wait(lambda: sum(counted().values()) >= n, 60), counted()
    spread = counted()
    record(spread_requests=n, spread_per_replica=sorted(int(v) for v in spread.values()))
    assert len([v for v in spread.values() if v > 0]) == REPLICAS, spread


def _resolvers(compose) -> dict[str, str]:
    """What the lb container's resolvers answer for the replicas' name now ("rcode answers"):
    docker/nginx.conf's 127.0.0.11 (the stand-in's forwarder) and each nameserver of the
    container's /etc/resolv.conf, queried from inside its network namespace."""
    lb = compose("ps", "--quiet", "lb").split()[0]
    pid = podman("inspect", "--format", "{{.State.Pid}}", lb).stdout.strip()
    conf = podman("exec", lb, "cat", "/etc/resolv.conf").stdout.split("\n")
    servers = ["127.0.0.11"] + [line.split()[1] for line in conf if line.startswith("nameserver")]
    proc = subprocess.run(["nsenter", f"--target={pid}", "--net", sys.executable,
                           str(REPO / "scripts" / "dns_query.py"), SCALE_NAME, *servers],
                          capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    answers = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    return answers or {"error": proc.stderr.strip()[-300:]}


def test_a_replica_killed_and_replaced_under_traffic_loses_no_request(stack):
    compose, lb, prom = stack["compose"], stack["lb"], stack["prom"]
    assert _wait(lambda: _replicas_up(prom, REPLICAS), 90), _targets(prom)
    retries_before = len(_nginx_retries(_lb_log(compose)))
    body = photos(1)[0].read_bytes()
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            statuses.append(_detect(lb, body))

    clients = [threading.Thread(target=client) for _ in range(2)]
    for t in clients:
        t.start()
    try:
        time.sleep(5)
        victim = compose("ps", "--quiet", SCALE_NAME).split()[0]
        victim_ips = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}"
                            "{{.IPAddress}} {{end}}", victim).stdout.split()  # fmt: skip
        podman("kill", victim)  # SIGKILL: no graceful shutdown, in-flight requests cut
        killed_at = len(statuses)
        podman("rm", victim)  # gone for good (else restart: unless-stopped revives it)
        compose("up", "--detach", "--no-build", "--no-recreate", "--scale",
                f"{SCALE_NAME}={REPLICAS}", SCALE_NAME)  # fmt: skip
        replaced = _wait(lambda: _replicas_up(prom, REPLICAS), 120)
        time.sleep(5)
    finally:
        stop.set()
        for t in clients:
            t.join(timeout=180)
    failed = Counter(s for s in statuses if s != 200)
    lb_log = _lb_log(compose)
    retries = _nginx_retries(lb_log)[retries_before:]
    # the clients' own requests only: health checks through the lb can meet the bug too (more of
    # them while a replacement replica spends its start-up timing runtimes)
    refused = [line for line in _refused_retries(lb_log, victim_ips) if '"POST /detect ' in line]
    record(kill_requests=len(statuses), kill_requests_after_kill=len(statuses) - killed_at,
           kill_failed=sum(failed.values()), kill_nginx_retries=len(retries),
           kill_lost_to_nginx_1656=len(refused))  # fmt: skip
    assert replaced, _targets(prom)
    # The one loss allowed is nginx's own bug (see _refused_retries): every failed request must
    # be such a 502, and at most one per client (requests in flight when DNS changed).
    if failed and not (set(failed) == {502} and failed[502] == len(refused) <= len(clients)):
        first = next(i for i, s in enumerate(statuses) if s != 200)
        raise AssertionError(
            f"{dict(failed)} of {len(statuses)} requests failed (the first at request {first}, "
            f"the kill at {killed_at}); retried: {retries[:3]}; nginx errors, the first of "
            f"each kind: {_error_kinds(lb_log)}; the lb's resolvers now ('rcode answers'): "
            f"{_resolvers(compose)}")
    running = compose("ps", "--quiet", "--status", "running", SCALE_NAME).split()
    assert len(running) == REPLICAS and victim not in running


def _ready_models(prom: str) -> dict[str, int]:
    """model -> how many detector instances report it ready (detector_model_ready == 1)."""
    q = urllib.parse.quote("count by (model) (detector_model_ready == 1)")
    result = _get_json(f"{prom}/api/v1/query?query={q}")["data"]["result"]
    return {r["metric"].get("model", ""): int(float(r["value"][1])) for r in result}


def test_a_model_copied_into_the_folder_is_served_after_sighup(stack):
    """The compose header's recipe: copy under a hidden name, rename into place, then
    `docker compose kill -s HUP`; every detector (the single one and each replica) loads it."""
    compose, lb, prom, models = stack["compose"], stack["lb"], stack["prom"], stack["models"]
    instances = REPLICAS + 1  # + the `detector` service (Prometheus depends on it)
    assert _wait(lambda: _ready_models(prom).get("default") == instances, 90), _ready_models(prom)
    tmp = models / ".birds.onnx.tmp"
    shutil.copyfile(models / "default.onnx", tmp)
    tmp.chmod(0o644)
    tmp.rename(models / "birds.onnx")
    t0 = time.monotonic()
    compose("kill", "-s", "HUP", SCALE_NAME, "detector")
    served = _wait(lambda: _ready_models(prom).get("birds") == instances, 180)
    record(sighup_new_model_ready_s=round(time.monotonic() - t0, 1))
    assert served, _ready_models(prom)
    assert _ready_models(prom).get("default") == instances, "the default model kept serving"
    listing = _get_json(f"{lb}/models")
    assert listing["default"] == "default", listing
    states = {m["name"]: m["state"] for m in listing["models"]}
    assert states == {"birds": "ready", "default": "ready"}, listing
    req = urllib.request.Request(f"{lb}/detect?model=birds", data=photos(1)[0].read_bytes(),
                                 method="POST", headers={"Content-Type": "image/jpeg"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.status == 200
