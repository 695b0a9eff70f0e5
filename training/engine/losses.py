"""FCOS losses (torch): sigmoid focal loss, GIoU loss on l,t,r,b distances, FCOSLoss module.

FCOSLoss normalisation (as the official FCOS code):

- classification: focal loss summed over all locations and classes (one-hot targets,
  background = all zeros) / num_pos;
- box: (1 - GIoU), or 1 - IoU with box_loss="iou", on positives weighted by their
  centre-ness target, / the sum of the centre-ness targets;
- centre-ness: BCE-with-logits on positives (target = centre-ness of the assigned l,t,r,b),
  summed / num_pos.

Under DDP both normalisers (num_pos and the centre-ness sum) are all-reduced (sum) and divided
by the world size, so every process divides by the global mean; num_pos is clamped to >= 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from training.engine.targets import (
    DEFAULT_RANGES,
    DEFAULT_STRIDES,
    RangesLike,
    batch_targets,
    centerness_target,
    level_ranges,
    make_points,
)


def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Summed focal loss (Lin et al.) for (N, C) logits and (N, C) float targets in [0, 1].

    loss = alpha_t * (1 - p_t) ** gamma * BCE(logits, targets); alpha < 0 disables alpha_t.
    Computed via BCE-with-logits, so it is stable for large |logits|.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def _ltrb_iou_terms(pred: Tensor, target: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """IoU, union and enclosing-box area of (N, 4) l, t, r, b boxes around the same point.

    Each box is (-l, -t, r, b) xyxy around that point; distances may be negative.
    """
    pred_xyxy = torch.cat([-pred[:, :2], pred[:, 2:]], dim=1)  # (N, 4) xyxy
    tgt_xyxy = torch.cat([-target[:, :2], target[:, 2:]], dim=1)  # (N, 4) xyxy
    pred_wh = (pred_xyxy[:, 2:] - pred_xyxy[:, :2]).clamp(min=0)  # (N, 2)
    tgt_wh = (tgt_xyxy[:, 2:] - tgt_xyxy[:, :2]).clamp(min=0)  # (N, 2)
    pred_area = pred_wh[:, 0] * pred_wh[:, 1]  # (N,)
    tgt_area = tgt_wh[:, 0] * tgt_wh[:, 1]  # (N,)
    inter_wh = (
        torch.minimum(pred_xyxy[:, 2:], tgt_xyxy[:, 2:])
        - torch.maximum(pred_xyxy[:, :2], tgt_xyxy[:, :2])
    ).clamp(min=0)  # (N, 2)
    inter = inter_wh[:, 0] * inter_wh[:, 1]  # (N,)
    union = pred_area + tgt_area - inter  # (N,)
    encl_wh = (
        torch.maximum(pred_xyxy[:, 2:], tgt_xyxy[:, 2:])
        - torch.minimum(pred_xyxy[:, :2], tgt_xyxy[:, :2])
    ).clamp(min=0)  # (N, 2)
    enclosing = encl_wh[:, 0] * encl_wh[:, 1]  # (N,)
    return inter / (union + eps), union, enclosing


def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """1 - GIoU for boxes given as (N, 4) l, t, r, b distances from the same point -> (N,).

    Each box is (-l, -t, r, b) xyxy around that point; distances may be negative (then boxes
    can be disjoint: GIoU < 0 and the loss exceeds 1). Range [0, 2].
    """
    iou, union, enclosing = _ltrb_iou_terms(pred, target, eps)
    giou = iou - (enclosing - union) / (enclosing + eps)
    return 1 - giou


def iou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """1 - IoU for (N, 4) l, t, r, b distances from the same point -> (N,); range [0, 1].

    GIoU without its enclosing-box penalty: the baseline of the GIoU paper (Rezatofighi et
    al. 2019), kept for the ablation (`--box-loss iou`). Disjoint boxes all lose 1, with no
    gradient towards each other.
    """
    iou, _, _ = _ltrb_iou_terms(pred, target, eps)
    return 1 - iou


BOX_LOSSES = {"giou": giou_loss, "iou": iou_loss}


def _world_mean(value: Tensor) -> Tensor:
    """Sum over DDP processes / world size (identity without an initialised process group)."""
    if dist.is_available() and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value = value / dist.get_world_size()
    return value


class FCOSLoss(nn.Module):
    """FCOS training loss on `FCOS.forward_train` outputs (box distances in stride units).

    forward(cls_logits (B, P, C), box_pred (B, P, 4), ctr_logits (B, P, 1), boxes, labels,
    image_hw) -> {"cls", "box", "ctr", "total", "num_pos", "num_pos_avg"}: boxes[i] (M_i, 4)
    xyxy input px, labels[i] (M_i,) int class ids (or both padded: engine.targets.pad_targets),
    image_hw the (padded) input (H, W) of the batch.
    total = cls + box_weight * box + ctr_weight * ctr. num_pos is the local (this process)
    number of positive locations, detached; num_pos_avg the normaliser (world mean, >= 1).
    Everything is computed in float32 (autocast off).
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int] = DEFAULT_STRIDES,
        ranges: RangesLike = DEFAULT_RANGES,
        center_radius: float | None = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_weight: float = 1.0,
        ctr_weight: float = 1.0,
        box_loss: str = "giou",
    ) -> None:
        super().__init__()
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss must be one of {sorted(BOX_LOSSES)}, not {box_loss!r}")
        self.box_loss_fn = BOX_LOSSES[box_loss]
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)
        self.ranges = tuple(level_ranges(ranges, len(self.strides)))  # (lo, hi) per level
        self.center_radius = center_radius
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_weight = box_weight
        self.ctr_weight = ctr_weight
        self._points: dict[tuple[int, int, str], tuple[Tensor, Tensor, Tensor]] = {}

    def points(
        self, height: int, width: int, device: torch.device
    ) -> tuple[Tensor, Tensor, Tensor]:
        """make_points for this loss's strides and bounds, cached per (H, W, device)."""
        key = (int(height), int(width), str(device))
        if key not in self._points:
            if len(self._points) >= 32:  # multi-scale training: keep the cache bounded
                self._points.clear()
            self._points[key] = make_points(height, width, self.strides, device, self.ranges)
        return self._points[key]

    def forward(
        self,
        cls_logits: Tensor,
        box_pred: Tensor,
        ctr_logits: Tensor,
        boxes: Sequence[Tensor] | Tensor,
        labels: Sequence[Tensor] | Tensor,
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        device = cls_logits.device
        with torch.autocast(device_type=device.type, enabled=False):
            return self._forward(
                cls_logits.float(), box_pred.float(), ctr_logits.float(), boxes, labels, image_hw
            )

    def _forward(
        self,
        cls_logits: Tensor,
        box_pred: Tensor,
        ctr_logits: Tensor,
        boxes: Sequence[Tensor] | Tensor,
        labels: Sequence[Tensor] | Tensor,
        image_hw: tuple[int, int],
    ) -> dict[str, Tensor]:
        batch, num_points, num_classes = cls_logits.shape
        if num_classes != self.num_classes:
            raise ValueError(f"{num_classes} class logits, loss built for {self.num_classes}")
        if len(boxes) != batch or len(labels) != batch:
            raise ValueError(f"batch of {batch} but {len(boxes)} boxes / {len(labels)} labels")
        points, point_strides, ranges = self.points(image_hw[0], image_hw[1], cls_logits.device)
        if points.shape[0] != num_points:
            raise ValueError(f"{num_points} locations, expected {points.shape[0]} for {image_hw}")

        with torch.no_grad():
            cls_t, box_t, _ = batch_targets(
                points, point_strides, ranges, boxes, labels, self.center_radius
            )  # (B, P), (B, P, 4) stride units, (B, P)
        pos = cls_t >= 0  # (B, P)
        num_pos_local = pos.sum().float()
        num_pos_avg = _world_mean(num_pos_local).clamp(min=1.0)

        # Masks instead of gathering the positives: no nonzero(), so no host sync in the step.
        onehot = torch.zeros_like(cls_logits)  # (B, P, C)
        onehot.scatter_(2, cls_t.clamp(min=0)[..., None], pos[..., None].to(onehot.dtype))
        cls_loss = sigmoid_focal_loss(
            cls_logits.reshape(-1, num_classes), onehot.reshape(-1, num_classes),
            self.focal_alpha, self.focal_gamma,
        ) / num_pos_avg  # fmt: skip

        ctr_tgt = centerness_target(box_t.reshape(-1, 4)).reshape(batch, num_points)  # (B, P)
        ctr_tgt = torch.where(pos, ctr_tgt, torch.zeros_like(ctr_tgt))  # 0 on background
        ctr_sum_avg = _world_mean(ctr_tgt.sum()).clamp(min=1e-6)
        box_terms = self.box_loss_fn(box_pred.reshape(-1, 4), box_t.reshape(-1, 4))
        box_terms = torch.where(pos.reshape(-1), box_terms * ctr_tgt.reshape(-1), 0.0)  # (B*P,)
        # Without positives every term is 0 and still in the graph (DDP expects gradients).
        box_loss = box_terms.sum() / ctr_sum_avg
        ctr_terms = F.binary_cross_entropy_with_logits(
            ctr_logits[..., 0], ctr_tgt, reduction="none"
        )  # (B, P)
        ctr_loss = torch.where(pos, ctr_terms, 0.0).sum() / num_pos_avg
        total = cls_loss + self.box_weight * box_loss + self.ctr_weight * ctr_loss
        return {
            "cls": cls_loss,
            "box": box_loss,
            "ctr": ctr_loss,
            "total": total,
            "num_pos": num_pos_local.detach(),
            "num_pos_avg": num_pos_avg.detach(),
        }
