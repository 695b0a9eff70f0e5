"""Tests for FCOS losses (training.engine.losses): hand-computed values and end-to-end checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.config import get_preset
from model.fcos import FCOS
from training.config import BOX_LOSS_NAMES
from training.engine.losses import BOX_LOSSES, FCOSLoss, giou_loss, iou_loss, sigmoid_focal_loss
from training.engine.targets import batch_targets, centerness_target, make_points, pad_targets


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_focal_loss_hand_cases() -> None:
    # x=0, y=1: p=0.5, CE=ln 2, (1-p_t)^2 = 0.25, alpha_t = 0.25.
    a = 0.25 * 0.25 * math.log(2)
    # x=2, y=0: CE = ln(1 + e^2), 1-p_t = p = sigmoid(2), alpha_t = 0.75.
    b = 0.75 * _sig(2) ** 2 * math.log(1 + math.exp(2))
    # x=-1, y=1, gamma=2: CE = ln(1 + e), 1-p_t = 1 - sigmoid(-1).
    c = 0.25 * (1 - _sig(-1)) ** 2 * math.log(1 + math.e)
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    out = sigmoid_focal_loss(logits, targets)
    assert out.shape == ()
    assert out.item() == pytest.approx(a + b + c, rel=1e-6)
    # gamma=0, alpha<0: plain BCE.
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0).item() == pytest.approx(
        bce.item()
    )


def test_focal_loss_stable_for_large_logits() -> None:
    logits = torch.tensor([[100.0, -100.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0]])
    out = sigmoid_focal_loss(logits, targets)
    # Both maximally wrong: (1-p_t) = 1, CE = 100 (to float precision).
    assert out.item() == pytest.approx(0.75 * 100 + 0.25 * 100, rel=1e-5)
    out.backward()
    assert torch.isfinite(logits.grad).all()
    # Confident and right: ~0.
    assert sigmoid_focal_loss(torch.tensor([[-100.0, 100.0]]), targets).item() < 1e-30


def test_giou_identical_is_zero() -> None:
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]])
    torch.testing.assert_close(giou_loss(t, t), torch.zeros(2), atol=1e-6, rtol=0)


def test_giou_hand_cases() -> None:
    pred = torch.tensor(
        [
            [1.0, 1, 1, 1],  # [-1,1]^2 vs target [-1,3]x[-1,1]: IoU 4/8, enclosing = union
            [1.0, 1, 1, 1],  # [-1,1]^2 vs [0,2]^2: inter 1, union 7, enclosing 9
            [2.0, 0, 0, 2],  # [-2,0]x[0,2] vs [0,2]x[-2,0]: touch at a corner, enclosing 16
            [-2.0, 1, 3, 1],  # x [2,3], y [-1,1] (area 2) vs x [-3,-1], y [-2,2] (area 8)
        ]
    )
    target = torch.tensor([[1.0, 1, 3, 1], [0.0, 0, 2, 2], [0.0, 2, 2, 0], [3.0, 2, -1, 2]])
    expected = [
        0.5,
        1 - (1 / 7 - 2 / 9),
        1 - (0 - 8 / 16),  # disjoint interiors: GIoU = -0.5 -> loss 1.5
        1 - (0 - (24 - 10) / 24),  # disjoint: enclosing x [-3,3], y [-2,2] = 24, union 10
    ]
    out = giou_loss(pred, target)
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    assert out[2] > 1 and out[3] > 1


def test_giou_gradient_and_degenerate() -> None:
    pred = torch.tensor([[1.0, 1, 1, 1], [0.0, 0, 0, 0]], requires_grad=True)
    target = torch.tensor([[2.0, 1, 1, 3], [1.0, 1, 1, 1]])
    out = giou_loss(pred, target)
    assert torch.isfinite(out).all() and out[1].item() == pytest.approx(1.0, abs=1e-6)
    out.sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0].abs().sum() > 0


def test_iou_loss_hand_cases_and_relation_to_giou() -> None:
    pred = torch.tensor([[1.0, 1, 1, 1], [1.0, 1, 1, 1], [2.0, 0, 0, 2], [1.0, 1, 1, 1]])
    target = torch.tensor([[1.0, 1, 3, 1], [0.0, 0, 2, 2], [0.0, 2, 2, 0], [1.0, 1, 1, 1]])
    # Nested: IoU 4/8; overlapping: 1/7; touching at a corner: 0; identical: 1.
    expected = torch.tensor([0.5, 1 - 1 / 7, 1.0, 0.0])
    out = iou_loss(pred, target)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    giou = giou_loss(pred, target)
    # One box inside the other: the enclosing box is the union, so GIoU = IoU.
    torch.testing.assert_close(out[[0, 3]], giou[[0, 3]], rtol=1e-5, atol=1e-6)
    # Otherwise GIoU adds the (enclosing - union) / enclosing penalty.
    torch.testing.assert_close(giou[[1, 2]] - out[[1, 2]], torch.tensor([2 / 9, 0.5]))
    assert iou_loss(torch.zeros((0, 4)), torch.zeros((0, 4))).shape == (0,)


def _random_head_outputs(
    seed: int, batch: int, hw: tuple[int, int], c: int
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor,
           torch.Tensor]:  # fmt: skip
    """make_points for hw, then random class logits (B, P, C), distances (B, P, 4), ctr."""
    gen = torch.Generator().manual_seed(seed)
    points = make_points(*hw, device="cpu")
    p = points[0].shape[0]
    cls = torch.randn(batch, p, c, generator=gen)
    box = torch.rand(batch, p, 4, generator=gen) * 3
    ctr = torch.randn(batch, p, 1, generator=gen)
    return points, cls, box, ctr


def test_fcos_loss_box_loss_switch() -> None:
    hw, c = (64, 64), 2
    (pts, strides, rng), cls, box, ctr = _random_head_outputs(3, 1, hw, c)
    boxes, labels = [torch.tensor([[4.0, 6, 50, 44]])], [torch.tensor([1])]
    ref = FCOSLoss(c)(cls, box, ctr, boxes, labels, hw)
    out = FCOSLoss(c, box_loss="iou")(cls, box, ctr, boxes, labels, hw)
    _, box_t, _ = batch_targets(pts, strides, rng, boxes, labels, 1.5)
    pos = box_t[0].amax(dim=1) > 0
    w = centerness_target(box_t[0][pos])
    expected = (iou_loss(box[0][pos], box_t[0][pos]) * w).sum() / w.sum()
    torch.testing.assert_close(out["box"], expected)
    assert out["box"] < ref["box"]  # random boxes rarely nest: GIoU adds its penalty
    for k in ("cls", "ctr", "num_pos"):
        torch.testing.assert_close(out[k], ref[k])
    with pytest.raises(ValueError, match="box_loss"):
        FCOSLoss(c, box_loss="l1")
    assert tuple(BOX_LOSSES) == BOX_LOSS_NAMES  # the CLI's choices


@pytest.fixture(scope="module")
def tiny() -> FCOS:
    torch.manual_seed(0)
    return FCOS(get_preset("tiny", class_names=("a", "b", "c")))


def _batch() -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 128, 128, generator=gen)
    boxes = [torch.tensor([[10.0, 20, 60, 90], [70, 10, 120, 50]]), torch.zeros((0, 4))]
    labels = [torch.tensor([0, 2]), torch.zeros((0,), dtype=torch.int64)]
    return images, boxes, labels


def test_fcos_loss_end_to_end(tiny: FCOS) -> None:
    images, boxes, labels = _batch()
    crit = FCOSLoss(tiny.cfg.num_classes, tiny.cfg.strides)
    tiny.zero_grad()
    out = crit(*tiny.forward_train(images), boxes, labels, (128, 128))
    assert set(out) == {"cls", "box", "ctr", "total", "num_pos", "num_pos_avg"}
    for k in ("cls", "box", "ctr", "total"):
        assert out[k].shape == () and out[k].dtype == torch.float32
        assert torch.isfinite(out[k]) and out[k].item() > 0
    assert out["num_pos"].item() > 0
    out["total"].backward()
    grads = [p.grad for p in tiny.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert tiny.head.bbox_pred.weight.grad.abs().sum() > 0
    assert tiny.head.centerness.weight.grad.abs().sum() > 0


def test_fcos_loss_matches_manual_normalisation() -> None:
    hw, c = (64, 96), 4
    (pts, strides, rng), cls, box, ctr = _random_head_outputs(2, 2, hw, c)
    boxes = [torch.tensor([[5.0, 5, 50, 40], [30, 10, 90, 60]]), torch.tensor([[0.0, 0, 20, 30]])]
    labels = [torch.tensor([1, 3]), torch.tensor([0])]
    out = FCOSLoss(c)(cls, box, ctr, boxes, labels, hw)
    cls_t, box_t, _ = batch_targets(pts, strides, rng, boxes, labels, 1.5)
    pos = cls_t >= 0
    n = pos.sum().float()
    onehot = F.one_hot(cls_t.clamp(min=0), c).float() * pos[..., None]
    torch.testing.assert_close(out["cls"], sigmoid_focal_loss(cls, onehot) / n)
    w = centerness_target(box_t[pos])
    torch.testing.assert_close(out["box"], (giou_loss(box[pos], box_t[pos]) * w).sum() / w.sum())
    bce = F.binary_cross_entropy_with_logits(ctr[pos][:, 0], w, reduction="sum") / n
    torch.testing.assert_close(out["ctr"], bce)
    torch.testing.assert_close(out["total"], out["cls"] + out["box"] + out["ctr"])
    assert out["num_pos"].item() == n.item()
    weighted = FCOSLoss(c, box_weight=2.0, ctr_weight=0.5)(cls, box, ctr, boxes, labels, hw)
    torch.testing.assert_close(weighted["total"], out["cls"] + 2.0 * out["box"] + 0.5 * out["ctr"])


def test_fcos_loss_padded_targets_equal_lists() -> None:
    hw, c = (64, 96), 4
    _, cls, box, ctr = _random_head_outputs(3, 3, hw, c)
    boxes = [torch.tensor([[5.0, 5, 50, 40], [30, 10, 90, 60]]), torch.zeros((0, 4)),
             torch.tensor([[0.0, 0, 20, 30]])]  # fmt: skip
    labels = [torch.tensor([1, 3]), torch.zeros((0,), dtype=torch.int64), torch.tensor([0])]
    listed = FCOSLoss(c)(cls, box, ctr, boxes, labels, hw)
    padded = FCOSLoss(c)(cls, box, ctr, *pad_targets(boxes, labels), hw)
    for k in ("cls", "box", "ctr", "total", "num_pos"):
        assert torch.equal(listed[k], padded[k]), k


def test_fcos_loss_no_boxes_at_all(tiny: FCOS) -> None:
    images, _, _ = _batch()
    empty = [torch.zeros((0, 4)), torch.zeros((0, 4))]
    no_labels = [torch.zeros((0,), dtype=torch.int64)] * 2
    tiny.zero_grad()
    out = FCOSLoss(tiny.cfg.num_classes)(*tiny.forward_train(images), empty, no_labels, (128, 128))
    assert out["num_pos"].item() == 0
    assert out["box"].item() == 0 and out["ctr"].item() == 0
    assert torch.isfinite(out["cls"]) and out["cls"].item() > 0  # normalised by max(0, 1)
    out["total"].backward()
    assert all(p.grad is not None for p in tiny.parameters())


def test_fcos_loss_bf16_inputs_compute_in_float32() -> None:
    pts, _, _ = make_points(64, 64, device="cpu")
    p = pts.shape[0]
    cls = torch.randn(1, p, 2).bfloat16().requires_grad_()
    box = (torch.rand(1, p, 4) * 2).bfloat16().requires_grad_()
    ctr = torch.randn(1, p, 1).bfloat16().requires_grad_()
    boxes, labels = [torch.tensor([[0.0, 0, 40, 30]])], [torch.tensor([1])]
    crit = FCOSLoss(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = crit(cls, box, ctr, boxes, labels, (64, 64))
    assert all(out[k].dtype == torch.float32 for k in ("cls", "box", "ctr", "total"))
    ref = crit(cls.float(), box.float(), ctr.float(), boxes, labels, (64, 64))
    torch.testing.assert_close(out["total"], ref["total"])
    out["total"].backward()
    assert cls.grad is not None and cls.grad.dtype == torch.bfloat16


def test_fcos_loss_points_cached_and_shape_checked() -> None:
    crit = FCOSLoss(2)
    a = crit.points(64, 64, torch.device("cpu"))
    assert crit.points(64, 64, torch.device("cpu")) is a
    with pytest.raises(ValueError):
        crit(torch.zeros(1, 10, 2), torch.zeros(1, 10, 4), torch.zeros(1, 10, 1),
             [torch.zeros((0, 4))], [torch.zeros((0,), dtype=torch.int64)], (64, 64))  # fmt: skip


def test_fcos_loss_single_process_group(tmp_path: Path) -> None:
    """Under an initialised (world size 1) process group the result is unchanged."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    pts, _, _ = make_points(64, 64, device="cpu")
    gen = torch.Generator().manual_seed(3)
    args = (
        torch.randn(1, pts.shape[0], 2, generator=gen),
        torch.rand(1, pts.shape[0], 4, generator=gen),
        torch.randn(1, pts.shape[0], 1, generator=gen),
        [torch.tensor([[4.0, 4, 50, 40]])],
        [torch.tensor([1])],
        (64, 64),
    )
    ref = FCOSLoss(2)(*args)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1
    )
    try:
        out = FCOSLoss(2)(*args)
    finally:
        torch.distributed.destroy_process_group()
    for k in ref:
        torch.testing.assert_close(out[k], ref[k])


@pytest.mark.slow
def test_few_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = FCOS(get_preset("tiny", class_names=("a", "b", "c")))
    images, boxes, labels = _batch()
    boxes[1], labels[1] = torch.tensor([[30.0, 30, 100, 110]]), torch.tensor([1])
    crit = FCOSLoss(model.cfg.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        out = crit(*model.forward_train(images), boxes, labels, (128, 128))
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(out["total"].item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses
