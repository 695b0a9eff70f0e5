"""Several images per request (POST /detect/batch: multipart parts or a JSON list), JSON base64
input on /detect, and duplicate fields on the single-image route."""

from __future__ import annotations

import base64
from typing import Any

from fastapi.testclient import TestClient

from bench.attacks.images import jpeg, png
from tests.service.test_metrics import scrape, value

Q = "score_threshold=0&max_detections=20"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def single(client: TestClient, body: bytes) -> list[dict[str, Any]]:
    r = client.post(f"/detect?{Q}", content=body)
    assert r.status_code == 200, r.text
    dets: list[dict[str, Any]] = r.json()["detections"]
    return dets


def parts(*images: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"i{i}", im, "application/octet-stream")) for i, im in enumerate(images)]


def test_multipart_batch_one_result_per_image_in_order(client: TestClient) -> None:
    a, b = jpeg(320, 240), png(200, 100)
    def oks() -> list[float]:  # the batch, and the single /detect calls that check it
        families = scrape(client)
        return [value(families, "detector_requests_total", model="fcos-tiny", route=route,
                      outcome="ok") for route in ("batch", "detect")]  # fmt: skip

    before = oks()
    r = client.post(f"/detect/batch?{Q}", files=parts(a, b"not an image", b, b""))
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["index"] for x in res] == [0, 1, 2, 3]
    assert [x["status"] for x in res] == [200, 415, 200, 400]
    assert res[0]["result"]["detections"] == single(client, a)
    assert res[2]["result"]["detections"] == single(client, b)
    assert res[2]["result"]["image"] == {"width": 200, "height": 100, "tiles": 0}
    assert res[1]["error"]["code"] == "unsupported_media_type" and res[1]["result"] is None
    assert res[3]["error"]["code"] == "empty_input"
    assert oks() == [before[0] + 1, before[1] + 2]


def test_json_batch_and_per_image_errors(client: TestClient) -> None:
    a = jpeg(160, 120)
    body = {"images": [b64(a), "@@not base64@@", "data:image/jpeg;base64," + b64(a)]}
    r = client.post(f"/detect/batch?{Q}&classes=dog", json=body)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [200, 400, 200]
    expected = [d for d in single(client, a) if d["label"] == "dog"]
    assert res[0]["result"]["detections"] == res[2]["result"]["detections"]
    assert {d["label"] for d in res[0]["result"]["detections"]} <= {"dog"}
    assert res[0]["result"]["detections"][: len(expected)] == expected[: len(expected)]
    for bad in ({"images": []}, {"images": "x"}, {"image": b64(a)}, [b64(a)]):
        r = client.post("/detect/batch", json=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter", bad


def test_batch_limits_per_image_and_per_request(serve: Any) -> None:
    small, big = jpeg(64, 48), jpeg(640, 480)
    with serve(max_upload_bytes=len(small) + 10, max_batch_images=3,
               max_batch_bytes=3 * len(small) + 100) as (_, client):  # fmt: skip
        r = client.post("/detect/batch", files=parts(small, big[: len(small) + 11], small))
        assert [x["status"] for x in r.json()["results"]] == [200, 413, 200]
        r = client.post("/detect/batch", files=parts(small, small, small, small))
        assert r.status_code == 413 and "limit is 3" in r.json()["error"]["message"]
        r = client.post("/detect/batch", json={"images": [b64(small)] * 4})
        assert r.status_code == 413
        r = client.post("/detect/batch", json={"images": [b64(big)]})
        assert r.status_code in (200, 413)
        assert r.status_code == 413 or r.json()["results"][0]["status"] == 413
    with serve(max_batch_bytes=1000) as (_, client):
        r = client.post("/detect/batch", files=parts(big, big))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def test_batch_wrong_content_type_and_parameters(client: TestClient) -> None:
    r = client.post("/detect/batch", content=jpeg(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 415
    for query in ("score_threshold=2", "max_detections=0", "classes=unicorn", "timeout_ms=0"):
        r = client.post(f"/detect/batch?{query}", files=parts(jpeg()))
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter", query


def test_detect_takes_json_base64_like_a_binary_upload(client: TestClient) -> None:
    a = jpeg(320, 240)
    r = client.post(f"/detect?{Q}", json={"image": b64(a)})
    assert r.status_code == 200, r.text
    assert r.json()["detections"] == single(client, a)
    data_url = "data:image/jpeg;base64," + b64(a)
    r = client.post(f"/detect?{Q}&annotate=true", json={"image": data_url})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_detect_json_errors(serve: Any) -> None:
    with serve(max_upload_bytes=2000) as (_, client):
        cases: list[tuple[Any, int, str]] = [
            ({"image": "%%%"}, 400, "bad_request"),
            ({"image": 5}, 422, "invalid_parameter"),
            ({"images": ["x"]}, 422, "invalid_parameter"),
            ({}, 422, "invalid_parameter"),
            ({"image": b64(b"\0" * 2001)}, 413, "payload_too_large"),
            ({"image": b64(jpeg()[:1500])}, 400, "image_decode_error"),
            ({"image": b64(b"plain text")}, 415, "unsupported_media_type"),
            ({"image": ""}, 400, "empty_input"),
        ]
        for body, status, code in cases:
            r = client.post("/detect", json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (body, r.text)
            assert "images" not in str(body) or "/detect/batch" in r.json()["error"]["message"]
        as_json = {"content-type": "application/json"}
        r = client.post("/detect", content=b"{not json", headers=as_json)
        assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
        huge = b'{"image": "' + b"A" * 10_000 + b'"}'
        r = client.post("/detect", content=huge, headers=as_json)
        assert r.status_code == 413


def test_duplicate_image_field_on_detect_is_422(client: TestClient) -> None:
    r = client.post("/detect", files=parts(jpeg(), jpeg()))
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "sent 2 times" in msg and "/detect/batch" in msg
    r = client.post("/detect", files=[*parts(jpeg()), ("other", ("x", b"x", "text/plain"))])
    assert r.status_code == 200  # other fields are still ignored
