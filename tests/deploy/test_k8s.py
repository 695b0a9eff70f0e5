"""deploy/k8s/: every manifest validates against the Kubernetes JSON schemas (kubernetes-validate
ships them, no cluster or network needed), and the pieces fit together (selectors, ports,
probes, HPA target, security context, scrape annotations, the model repository's volume and
the initContainer that seeds it). deploy/k8s/tools/ (applied by hand) is validated too."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.helpers import INSTALL_HINT, K8S_DIR, parse_dockerfile

yaml = pytest.importorskip("yaml", reason=f"PyYAML is not installed: {INSTALL_HINT}")

# The oldest Kubernetes these manifests target (autoscaling/v2 and policy/v1 are GA since
# 1.23/1.21; 1.25 is the oldest schema set kubernetes-validate ships) and the newest it knows.
OLDEST = "1.25"


def _docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, dict]]:
    found = _docs()
    assert found, f"no manifests in {K8S_DIR}"
    return found


@pytest.fixture(scope="module")
def by_kind(docs) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for _, doc in docs:
        assert doc["kind"] not in out, f"one {doc['kind']} expected"
        out[doc["kind"]] = doc
    return out


def _versions() -> list[str]:
    pytest.importorskip("kubernetes_validate", reason=f"kubernetes-validate: {INSTALL_HINT}")
    from kubernetes_validate.utils import latest_version

    return [OLDEST, latest_version()]


MANIFESTS = sorted(K8S_DIR.glob("*.y*ml")) + sorted(K8S_DIR.glob("tools/*.y*ml"))
MODELS_DIR = "/models"  # DETECTOR_MODEL_DIR: the `detector-models` volume's mount
BUNDLED_MODEL = "/app/models/default.onnx"  # in the image (docker/Dockerfile)


@pytest.mark.parametrize("name", [str(p.relative_to(K8S_DIR)) for p in MANIFESTS])
def test_manifest_validates_against_the_kubernetes_schemas(name):
    versions = _versions()
    import kubernetes_validate

    for doc in yaml.safe_load_all((K8S_DIR / name).read_text()):
        if not doc:
            continue
        for version in versions:
            try:  # strict: unknown fields (typos) are errors too
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name} {doc['kind']} vs k8s {version}: {e.message} at {list(e.path)}")


def test_validator_rejects_a_broken_manifest(by_kind):
    _versions()
    import copy

    import kubernetes_validate

    broken = copy.deepcopy(by_kind["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)
    broken = copy.deepcopy(by_kind["Deployment"])
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)


def test_expected_resources(by_kind):
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
            "ConfigMap"} <= set(by_kind)  # fmt: skip
    assert by_kind["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    if "PodDisruptionBudget" in by_kind:
        assert by_kind["PodDisruptionBudget"]["apiVersion"] == "policy/v1"


def _container(dep: dict) -> dict:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def test_selectors_ports_and_targets_fit_together(by_kind):
    dep, svc, hpa = by_kind["Deployment"], by_kind["Service"], by_kind["HorizontalPodAutoscaler"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    if "PodDisruptionBudget" in by_kind:
        pdb = by_kind["PodDisruptionBudget"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    c = _container(dep)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports.get("http") == 8000
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in ports or p["targetPort"] in ports.values()
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        "apps/v1", "Deployment", dep["metadata"]["name"],
    )  # fmt: skip
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_probes(by_kind):
    c = _container(by_kind["Deployment"])
    assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] in ("/health/ready", "/health/live")
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= 60, "model load + warm-up needs time before liveness kicks in"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", 8000)


def test_resources_and_threads(by_kind):
    c = _container(by_kind["Deployment"])
    res = c["resources"]
    assert res["requests"]["cpu"] and res["limits"]["cpu"] and res["limits"]["memory"]
    # model threads and inference workers follow the CPU limit, not the node's core count
    env = {e["name"]: e for e in c.get("env", [])}
    for name in ("DETECTOR_THREADS", "DETECTOR_WORKERS"):
        ref = env[name]["valueFrom"]["resourceFieldRef"]
        assert ref["resource"] == "limits.cpu" and ref["containerName"] == c["name"]


def test_security_context_matches_the_image(by_kind):
    dep = by_kind["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = _container(dep)
    sc = c["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # the uid is the Dockerfile's USER; /tmp is writable (multipart spooling)
    user = parse_dockerfile().final.of("USER")[-1].args.split(":")[0].strip()
    assert str(pod["securityContext"]["runAsUser"]) == user
    mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
    assert "/tmp" in mounts


def test_env_and_scrape_annotations(by_kind):
    dep = by_kind["Deployment"]
    c = _container(dep)
    env: dict[str, str] = {e["name"]: e.get("value") for e in c.get("env", [])}
    for src in c.get("envFrom", []):
        cm_name = src["configMapRef"]["name"]
        cm = by_kind["ConfigMap"]
        assert cm["metadata"]["name"] == cm_name
        env.update(cm["data"])
    assert env["DETECTOR_PORT"] == "8000"
    assert env["DETECTOR_MODEL_DIR"] == MODELS_DIR
    assert "DETECTOR_MODEL_PATH" not in env, "DETECTOR_MODEL_DIR serves the volume"
    assert int(env["DETECTOR_MAX_MODELS"]) >= 1
    assert all(k.startswith("DETECTOR_") for k in env), env
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/port"] == "8000"
    assert ann["prometheus.io/path"] == "/metrics"
    # the Service's annotations are not required; the pod ones are what most setups read
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 30


# --------------------------------------------------------------------------------------------
# the model repository: a PersistentVolumeClaim, read-only in the detector, seeded by an
# initContainer with the image's bundled model
# --------------------------------------------------------------------------------------------


def _models_volume(dep: dict) -> dict:
    (vol,) = [v for v in dep["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]  # fmt: skip
    return vol


def _mount(container: dict, volume: str) -> dict:
    (m,) = [m for m in container.get("volumeMounts", []) if m["name"] == volume]
    return m


def test_models_volume_is_the_claim_read_only_at_the_model_dir(by_kind):
    dep, pvc = by_kind["Deployment"], by_kind["PersistentVolumeClaim"]
    vol = _models_volume(dep)
    assert vol["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"] == "detector-models"
    assert not vol["persistentVolumeClaim"].get("readOnly"), "the initContainer writes to it"
    # every replica (spread across nodes) mounts the one volume
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"]
    mount = _mount(_container(dep), vol["name"])
    assert mount["mountPath"] == MODELS_DIR and mount["readOnly"] is True
    assert by_kind["ConfigMap"]["data"]["DETECTOR_MODEL_DIR"] == mount["mountPath"]


def _seed(dep: dict) -> dict:
    (init,) = dep["spec"]["template"]["spec"]["initContainers"]
    return init


def test_seed_init_container(by_kind):
    dep = by_kind["Deployment"]
    init, c = _seed(dep), _container(dep)
    assert init["image"] == c["image"], "the detector's image holds the bundled model"
    mount = _mount(init, _models_volume(dep)["name"])
    assert mount["mountPath"] == MODELS_DIR and not mount.get("readOnly")
    assert init["command"][:2] == ["python", "-c"]
    assert init["command"][3:] == [BUNDLED_MODEL, f"{MODELS_DIR}/default.onnx"]
    # hardened as the detector; requests == limits so the pod keeps Guaranteed QoS
    sc = init["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for container in (init, c):
        res = container["resources"]
        assert res["requests"] == res["limits"], container["name"]


def test_seed_copies_the_bundled_model_only_when_absent(by_kind, tmp_path):
    """The initContainer's own script, run here with the image paths re-rooted: it seeds an
    empty volume atomically (no temporary file left) and never overwrites a model there."""
    code = _seed(by_kind["Deployment"])["command"][2]
    bundled = tmp_path / "app" / "default.onnx"
    bundled.parent.mkdir()
    bundled.write_bytes(b"bundled")
    volume = tmp_path / "models"
    volume.mkdir()
    target = volume / "default.onnx"

    def run() -> str:
        proc = subprocess.run([sys.executable, "-c", code, str(bundled), str(target)],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert "seeded" in run()
    assert target.read_bytes() == b"bundled"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in volume.iterdir()] == ["default.onnx"]
    target.write_bytes(b"the user's own default")
    assert "kept" in run()
    assert target.read_bytes() == b"the user's own default"


def test_manifest_comment_says_how_to_add_a_model():
    header = (K8S_DIR / "deployment.yaml").read_text().split("apiVersion:", 1)[0]
    for needed in ("detector-models", "ReadWriteMany", "ReadWriteOnce", "kubectl cp",
                   "SIGHUP", "rollout restart", "tools/models-upload.yaml"):  # fmt: skip
        assert needed in header, needed


def test_upload_pod_mounts_the_claim_read_write():
    (pod,) = [d for d in yaml.safe_load_all((K8S_DIR / "tools/models-upload.yaml").read_text())
              if d]  # fmt: skip
    assert pod["kind"] == "Pod"
    spec = pod["spec"]
    (vol,) = spec["volumes"]
    assert vol["persistentVolumeClaim"]["claimName"] == "detector-models"
    (c,) = spec["containers"]
    mount = _mount(c, vol["name"])
    assert mount["mountPath"] == MODELS_DIR and not mount.get("readOnly")
    user = parse_dockerfile().final.of("USER")[-1].args.split(":")[0].strip()
    assert str(spec["securityContext"]["runAsUser"]) == user, "files the detector can read"
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] <= 3600
