"""Flip test-time augmentation (export.flip_tta): grid bookkeeping against a plain loop, exact
agreement with a mirror-equivariant stand-in model, and the real tiny ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.flip_tta import FlipTTADetector, flip_average, mirror_input, unmirror
from export.postprocess import level_sizes
from export.runtime import OnnxDetector

STRIDES = (8, 16, 32, 64, 128)


def _reference_unmirror(flat: np.ndarray, h: int, w: int, wp: int) -> np.ndarray:
    """Location by location: plain (level, y, x) <- mirrored (level, y, wp_level - 1 - x)."""
    rows = []
    start_p = 0
    for (lh, lw), (_, lwp) in zip(level_sizes(h, w, STRIDES), level_sizes(h, wp, STRIDES),
                                  strict=True):  # fmt: skip
        for y in range(lh):
            for x in range(lw):
                rows.append(flat[:, start_p + y * lwp + (lwp - 1 - x)])
        start_p += lh * lwp
    return np.stack(rows, axis=1)


@pytest.mark.parametrize(("h", "w"), [(96, 160), (128, 128), (64, 288), (384, 256)])
def test_unmirror_matches_a_plain_loop(h: int, w: int) -> None:
    wp = -(-w // 128) * 128
    total = sum(a * b for a, b in level_sizes(h, wp, STRIDES))
    flat = np.random.default_rng(h * w).normal(size=(2, total, 3)).astype(np.float32)
    got = unmirror(flat, h, w, wp, STRIDES)
    assert got.shape == (2, sum(a * b for a, b in level_sizes(h, w, STRIDES)), 3)
    np.testing.assert_array_equal(got, _reference_unmirror(flat, h, w, wp))


def test_unmirror_rejects_a_wrong_location_count() -> None:
    with pytest.raises(ValueError, match="locations"):
        unmirror(np.zeros((1, 7, 3), np.float32), 128, 128, 128, STRIDES)


def test_mirror_input_pads_right_then_flips() -> None:
    x = np.arange(2 * 3 * 2 * 96, dtype=np.float32).reshape(2, 3, 2, 96)
    m = mirror_input(x, 128)
    assert m.shape == (2, 3, 2, 128) and m.flags.c_contiguous
    np.testing.assert_array_equal(m[..., :32], 0)  # the padding ends up on the left
    np.testing.assert_array_equal(m[..., 32:], x[..., ::-1])
    assert mirror_input(x[..., :64], 64).shape[3] == 64  # already a multiple: no padding


def _cells(tensor: np.ndarray, s: int) -> np.ndarray:
    """(N, 3, H, W) -> (N, h, w, 2, 3): per s x s cell (zero-padded like a conv), the mean of
    its left half and of its right half."""
    n, c, h, w = tensor.shape
    hp, wp = -(-h // s) * s, -(-w // s) * s
    x = np.pad(tensor, ((0, 0), (0, 0), (0, hp - h), (0, wp - w)))
    x = x.reshape(n, c, hp // s, s, wp // s, 2, s // 2)
    return x.mean(axis=(3, 6)).transpose(0, 2, 3, 4, 1)  # (N, h, w, 2, C)


def _equivariant_run(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stand-in detector that is exactly mirror-equivariant on the location grid: class and
    centre-ness and the top and bottom distances read the whole cell (left + right halves),
    the left distance reads the left half and the right distance the right half."""
    rng = np.random.default_rng(0)
    proj_cls, proj_box = rng.normal(size=(3, 4)), rng.normal(size=(3, 3))
    cls, box, ctr = [], [], []
    n = tensor.shape[0]
    for s in STRIDES:
        cell = _cells(tensor, s)  # (N, h, w, 2, 3)
        whole = cell.mean(axis=3)  # (N, h, w, 3)
        cls.append((whole @ proj_cls).reshape(n, -1, 4))
        ctr.append(whole.sum(axis=-1).reshape(n, -1, 1))
        left, right = cell[:, :, :, 0] @ proj_box, cell[:, :, :, 1] @ proj_box
        mid = whole @ proj_box
        ltrb = np.stack([left[..., 0], mid[..., 1], right[..., 0], mid[..., 2]], axis=-1)
        box.append(ltrb.reshape(n, -1, 4))
    return tuple(np.concatenate(x, axis=1).astype(np.float32) for x in (cls, box, ctr))  # type: ignore[return-value]


@pytest.mark.parametrize(("h", "w"), [(128, 128), (96, 160), (160, 96)])
def test_equivariant_model_is_unchanged_by_flip_averaging(h: int, w: int) -> None:
    x = np.random.default_rng(1).normal(size=(2, 3, h, w)).astype(np.float32)
    plain = _equivariant_run(x)
    merged = flip_average(_equivariant_run, x, STRIDES)
    for a, b in zip(plain, merged, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_flip_average_is_the_mean_of_both_passes() -> None:
    """A detector that sees only one half of each cell: flip averaging mixes in the other."""
    x = np.random.default_rng(2).normal(size=(1, 3, 128, 128)).astype(np.float32)

    def left_only(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cls = np.concatenate([_cells(t, s)[:, :, :, 0, :1].reshape(1, -1, 1) for s in STRIDES], 1)
        zeros = np.zeros((1, cls.shape[1], 4), np.float32)
        return cls, zeros, cls

    merged, _, _ = flip_average(left_only, x, STRIDES)
    both = np.concatenate([_cells(x, s)[..., :1].mean(axis=3).reshape(1, -1, 1)
                           for s in STRIDES], 1)  # fmt: skip
    np.testing.assert_allclose(merged, both, rtol=1e-5, atol=1e-6)


def test_onnx_detector_flip_tta(tiny_onnx_path: Path) -> None:
    plain = OnnxDetector(tiny_onnx_path, threads=1)
    tta = OnnxDetector(tiny_onnx_path, threads=1, flip_tta=True)
    x = np.random.default_rng(3).normal(size=(2, 3, 96, 160)).astype(np.float32)
    a, b = plain.infer(x), tta.infer(x)
    for u, v in zip(a, b, strict=True):
        assert u.shape == v.shape and np.isfinite(v).all()
    assert not np.allclose(a[0], b[0])  # the mirrored pass does contribute
    np.testing.assert_array_equal(FlipTTADetector(plain).infer(x)[0], b[0])
    result = tta.detect_image(Image.new("RGB", (200, 150), (90, 120, 30)))
    assert (result.width, result.height) == (200, 150)
