"""Horizontal-flip test-time augmentation on FCOS's dense outputs: NumPy only.

The detector runs twice, on the letterboxed tensor and on its mirror image, and the two sets
of per-location outputs are averaged before post-processing: at each location the class and
centre-ness logits are averaged with the mirrored location's, and so are the box distances
(ltrb), with the mirror's left and right distances swapped. The result has exactly the shapes
of a single pass, so decoding, thresholds and NMS are unchanged. It costs a second inference
(about twice the latency); on the bundled model it raised val mAP@0.5 (models/MODEL_CARD.md).

Mirroring is exact on the location grid only when the input width is a multiple of every
stride: the mirrored pass therefore runs on the tensor padded on the right (zeros: the mean
colour after normalisation, like the letterbox padding) to a multiple of the largest stride,
and its maps are mirrored back and cropped to the plain pass's grid.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from export.detector import Inferer, Outputs
from export.metadata import ModelMetadata
from export.postprocess import level_sizes

# ltrb -> rtlb: a mirrored box's left distance is the original's right one.
_SWAP_LR = [2, 1, 0, 3]


def mirror_input(tensor: np.ndarray, multiple: int) -> np.ndarray:
    """(N, 3, H, W) -> (N, 3, H, Wp) padded on the right to a multiple of `multiple`, then
    mirrored left-right (contiguous)."""
    pad = -tensor.shape[3] % multiple
    if pad:
        tensor = np.pad(tensor, ((0, 0), (0, 0), (0, 0), (0, pad)))
    return np.ascontiguousarray(tensor[..., ::-1])


def unmirror(
    flat: np.ndarray, height: int, width: int, padded_width: int, strides: tuple[int, ...]
) -> np.ndarray:
    """The mirrored pass's (N, Pp, K) outputs on a (height, padded_width) input -> (N, P, K)
    on the plain (height, width) input's grid: each level mirrored back and cropped."""
    n, total, k = flat.shape
    padded = level_sizes(height, padded_width, strides)
    expected = sum(h * wp for h, wp in padded)
    if total != expected:
        raise ValueError(f"{total} locations, expected {expected} for {height}x{padded_width}")
    out, start = [], 0
    for (h, w), (_, wp) in zip(level_sizes(height, width, strides), padded, strict=True):
        level = flat[:, start : start + h * wp].reshape(n, h, wp, k)
        out.append(level[:, :, ::-1][:, :, :w].reshape(n, h * w, k))  # (N, h*w, K)
        start += h * wp
    return np.concatenate(out, axis=1)


def flip_average(run: Callable[[np.ndarray], Outputs], tensor: np.ndarray,
                 strides: tuple[int, ...]) -> Outputs:  # fmt: skip
    """`run`'s outputs for (N, 3, H, W) `tensor`, averaged with those of its mirror image."""
    cls, box, ctr = run(tensor)
    h, w = tensor.shape[2:]
    mirrored = mirror_input(tensor, max(strides))
    m_cls, m_box, m_ctr = run(mirrored)
    wp = mirrored.shape[3]
    m_cls, m_box, m_ctr = (unmirror(x, h, w, wp, strides) for x in (m_cls, m_box, m_ctr))
    return (
        0.5 * (cls + m_cls),
        0.5 * (box + m_box[..., _SWAP_LR]),
        0.5 * (ctr + m_ctr),
    )


class FlipTTADetector:
    """Wraps a detector with `.metadata` and `.infer(tensor)` (the evaluation's TorchDetector;
    OnnxDetector has its own `flip_tta` switch) so that `.infer` returns flip-averaged outputs."""

    def __init__(self, inner: Inferer) -> None:
        self.inner = inner

    @property
    def metadata(self) -> ModelMetadata:
        return self.inner.metadata

    def infer(self, tensor: np.ndarray) -> Outputs:
        return flip_average(self.inner.infer, tensor, self.metadata.strides)
