"""HSV colour jitter on a whole uint8 batch, on the device the batch is on.

The loader draws each image's jitter (`training.data.color.draw_hsv`, so the draws and the
geometry are the host pipeline's) and this applies it to the batch after the host-to-device
copy. On the GPU it is a few elementwise passes over the batch; in a worker, Pillow's lookup
table was a third to a half of the time per sample. Here the HSV transform is exact (the host
path interpolates a 17^3 table); both clip saturation and value to [0, 1].
"""

from __future__ import annotations

import torch


def rgb_to_hsv(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB in [0, 1] -> hue in [0, 1) (a fraction of the circle), saturation and
    value, each (B, H, W). Greys have hue 0 and saturation 0."""
    r, g, b = rgb.unbind(1)
    v, argmax = rgb.max(dim=1)
    d = v - rgb.min(dim=1).values
    safe_d = torch.where(d > 0, d, torch.ones_like(d))
    h = torch.where(
        argmax == 0,
        torch.remainder((g - b) / safe_d, 6.0),
        torch.where(argmax == 1, (b - r) / safe_d + 2.0, (r - g) / safe_d + 4.0),
    )
    h = torch.where(d > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(v > 0, d / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return h, s, v


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hue (any real: taken modulo 1), saturation, value in [0, 1], each (B, H, W) ->
    (B, 3, H, W) RGB: channel n is v - v s clamp(min(k, 4 - k), 0, 1), k = (n' + 6h) mod 6
    with n' = 5, 3, 1 for R, G, B."""
    h6 = torch.remainder(h, 1.0) * 6.0
    offsets = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device).view(1, 3, 1, 1)
    k = torch.remainder(h6.unsqueeze(1) + offsets, 6.0)  # (B, 3, H, W)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    vs = v.unsqueeze(1)
    return vs - vs * s.unsqueeze(1) * ramp


def hsv_jitter_batch(images: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) images, (B, 3) [hue shift, saturation gain, value gain] per image
    (`draw_hsv`'s layout) -> uint8 (B, 3, H, W): hue += shift, S and V times their gains and
    clipped to [0, 1], rounded to the nearest level. Keeps the memory format."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 (B, 3, H, W) images, got {images.dtype} {images.shape}")
    if gains.shape != (images.shape[0], 3):
        raise ValueError(f"expected ({images.shape[0]}, 3) gains, got {tuple(gains.shape)}")
    g = gains.to(device=images.device, dtype=torch.float32).view(-1, 3, 1, 1)
    h, s, v = rgb_to_hsv(images.to(torch.float32) / 255.0)
    h = h + g[:, 0]
    s = (s * g[:, 1]).clamp_(0.0, 1.0)
    v = (v * g[:, 2]).clamp_(0.0, 1.0)
    rgb = hsv_to_rgb(h, s, v).mul_(255.0).round_()
    out = torch.empty_like(images)  # same memory format as the input
    return out.copy_(rgb)
