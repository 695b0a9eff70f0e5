"""Merging a tiled run's boxes (export/tile_merge.py): the parts rule, the cut rule, and
class-wise NMS with fused boxes against a plain greedy reference."""

from __future__ import annotations

import numpy as np
import pytest

from export.postprocess import Detections
from export.tile_merge import merge, parts_of_large_objects, spans_tiles


def dets(boxes, scores, classes) -> Detections:
    return Detections(np.asarray(boxes, np.float32).reshape(-1, 4),
                      np.asarray(scores, np.float32), np.asarray(classes, np.int64))  # fmt: skip


IMAGE = (1000, 500)
LEFT, RIGHT = (0, 0, 600, 500), (400, 0, 1000, 500)  # overlapping 400..600


def test_a_box_cut_by_an_inner_edge_goes_when_a_neighbour_holds_it() -> None:
    cut = dets([[550, 100, 600, 200]], [0.9], [0])  # touches LEFT's inner edge x = 600
    whole = dets([[500, 100, 650, 200]], [0.8], [0])  # the object, whole in RIGHT
    out = merge(Detections.empty(), [(LEFT, cut), (RIGHT, whole)], 0.5, 100, IMAGE)
    np.testing.assert_array_equal(out.boxes, whole.boxes)  # IoU 0.33: NMS alone keeps both


def test_a_cut_box_stays_without_a_holder_and_border_boxes_stay() -> None:
    cut = dets([[550, 100, 600, 200]], [0.9], [0])
    other_class = dets([[500, 100, 650, 200]], [0.8], [1])
    out = merge(Detections.empty(), [(LEFT, cut), (RIGHT, other_class)], 0.5, 100, IMAGE)
    assert len(out) == 2
    on_left_border = dets([[0, 100, 50, 200]], [0.7], [0])  # LEFT's x0 = 0: the image edge
    on_right_border = dets([[950, 0, 1000, 40]], [0.6], [0])  # RIGHT's x1 = 1000: the edge
    full = dets([[0, 90, 60, 210], [940, 0, 1000, 50]], [0.5, 0.5], [0, 0])
    out = merge(full, [(LEFT, on_left_border), (RIGHT, on_right_border)], 0.9, 100, IMAGE)
    assert len(out) == 4


def test_the_whole_image_box_holds_a_cut_tile_box() -> None:
    cut = dets([[401, 10, 480, 60]], [0.9], [2])  # within 2 px of RIGHT's inner edge x = 400
    full = dets([[380, 10, 480, 60]], [0.6], [2])
    out = merge(full, [(RIGHT, cut)], 0.9, 100, IMAGE)
    np.testing.assert_array_equal(out.boxes, full.boxes)


def test_spans_tiles_is_no_window_holding_the_box_whole() -> None:
    boxes = np.asarray([[10, 10, 590, 90], [410, 10, 990, 90], [300, 10, 700, 90],
                        [0, 0, 1000, 500]], np.float32)  # fmt: skip
    assert spans_tiles(boxes, [LEFT, RIGHT]).tolist() == [False, False, True, True]
    assert spans_tiles(boxes, []).tolist() == [True] * 4


def test_parts_of_a_confident_spanning_box_are_dropped_whatever_their_class() -> None:
    # A dog across both tiles (the whole image sees it, 0.8); LEFT boxes its head as a dog
    # and a paw as a cat, RIGHT the whole dog again (uncut: it ends at the image border).
    full = dets([[300, 50, 1000, 450]], [0.8], [0])  # area 700 x 400 = 280,000
    head = dets([[320, 60, 480, 200], [350, 380, 420, 440]], [0.9, 0.4], [0, 1])
    parts = parts_of_large_objects(full, [LEFT, RIGHT], head.boxes)
    assert parts.tolist() == [True, True]
    out = merge(full, [(LEFT, head)], 0.5, 100, IMAGE)
    np.testing.assert_array_equal(out.boxes, full.boxes)
    # Not a part: half outside the holder (inside 0.5 < 0.8), or as large as it (a second
    # object: area 600 x 380 = 228,000 >= 0.7 x 280,000 = 196,000).
    other = np.asarray([[200, 60, 400, 200], [380, 60, 980, 440]], np.float32)
    assert parts_of_large_objects(full, [LEFT, RIGHT], other).tolist() == [False, False]


def test_no_parts_without_a_confident_spanning_holder() -> None:
    head = np.asarray([[320, 60, 480, 200]], np.float32)
    faint = dets([[300, 50, 1000, 450]], [0.49], [0])  # below PART_HOLDER_SCORE 0.5
    assert not parts_of_large_objects(faint, [LEFT, RIGHT], head).any()
    inside_left = dets([[300, 50, 590, 450]], [0.9], [0])  # LEFT holds it whole: no span
    assert not parts_of_large_objects(inside_left, [LEFT, RIGHT], head).any()
    assert not parts_of_large_objects(Detections.empty(), [LEFT, RIGHT], head).any()
    assert parts_of_large_objects(inside_left, [LEFT], np.zeros((0, 4), np.float32)).shape == (0,)


def plain_iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def plain_nms_clusters(boxes, scores, classes, iou_thr, cap):
    """Textbook greedy NMS that also records which boxes each kept box suppressed."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    members: dict[int, list[int]] = {}
    for i in order:
        if len(keep) == cap:
            break
        holder = next((j for j in keep if classes[i] == classes[j]
                       and plain_iou(boxes[i], boxes[j]) > iou_thr), None)  # fmt: skip
        if holder is None:
            keep.append(i)
            members[i] = [i]
        else:
            members[holder].append(i)
    return keep, members


def test_merge_is_class_wise_nms_over_full_and_tiles_with_fused_boxes() -> None:
    rng = np.random.default_rng(3)
    whole_window = (0, 0, 300, 200)  # no inner edges: nothing is dropped before NMS
    parts, all_b, all_s, all_c = [], [], [], []
    for _ in range(3):
        xy = rng.uniform(0, 200, (40, 2))
        wh = rng.uniform(10, 80, (40, 2))
        b = np.concatenate([xy, np.minimum(xy + wh, [300, 200])], 1).astype(np.float32)
        s = rng.uniform(0, 1, 40).astype(np.float32)
        c = rng.integers(0, 3, 40)
        parts.append(dets(b, s, c))
        all_b.append(b), all_s.append(s), all_c.append(c)
    b, s, c = np.concatenate(all_b), np.concatenate(all_s), np.concatenate(all_c)
    out = merge(parts[0], [(whole_window, parts[1]), (whole_window, parts[2])], 0.5, 25,
                (300, 200))  # fmt: skip
    keep, members = plain_nms_clusters(b.tolist(), s.tolist(), c.tolist(), 0.5, 25)
    # The kept set, its scores and classes are NMS's; each box is its cluster's score-weighted
    # mean (NMS stopped at 25: boxes it never reached join the cluster they overlap).
    np.testing.assert_array_equal(out.scores, s[keep])
    np.testing.assert_array_equal(out.class_ids, c[keep])
    assert len(out) == 25 and (np.diff(out.scores) <= 0).all()
    fused_somewhere = False
    for row, i in enumerate(keep):
        group = [j for j in members[i]]
        group += [j for j in range(len(s)) if j not in group and c[j] == c[i]
                  and all(j not in m for m in members.values())
                  and plain_iou(b[i], b[j]) > 0.5
                  and not any(plain_iou(b[k], b[j]) > 0.5 and c[k] == c[j]
                              for k in keep[:row])]  # fmt: skip
        w = s[group].astype(np.float64)
        want = (b[group] * w[:, None]).sum(0) / w.sum()
        np.testing.assert_allclose(out.boxes[row], want, rtol=1e-5, atol=1e-3)
        fused_somewhere |= len(group) > 1
    assert fused_somewhere


def test_merge_fuses_a_cluster_by_score_hand_computed() -> None:
    # Tile boxes of one object from two tiles (IoU 80 / 120 = 0.67 > 0.5, class 0) and a class 1
    # box on top of them: the class-0 pair becomes one box at the 0.75 / 0.25 weighted mean,
    # x0 = 0.75 * 0 + 0.25 * 2 = 0.5 and x1 = 0.75 * 10 + 0.25 * 12 = 10.5, with the higher
    # score; the class-1 box is not fused with them. [5, 0, 15, 10] overlaps the kept box by
    # IoU 50 / 150 = 0.33: kept apart, unchanged (its IoU 70 / 130 with the suppressed
    # [2, 0, 12, 10] does not count: clusters are NMS's own).
    window = (0, 0, 100, 100)
    a = dets([[0, 0, 10, 10], [0, 0, 10, 10]], [0.75, 0.6], [0, 1])
    b = dets([[2, 0, 12, 10], [5, 0, 15, 10]], [0.25, 0.1], [0, 0])
    out = merge(Detections.empty(), [(window, a), (window, b)], 0.5, 100, (100, 100))
    np.testing.assert_allclose(out.boxes, [[0.5, 0, 10.5, 10], [0, 0, 10, 10], [5, 0, 15, 10]],
                               atol=1e-6)  # fmt: skip
    assert out.scores.tolist() == pytest.approx([0.75, 0.6, 0.1])
    assert out.class_ids.tolist() == [0, 1, 0]
    plain = merge(Detections.empty(), [(window, a), (window, b)], 0.5, 100, (100, 100),
                  rule="nms")  # the same set, boxes as NMS kept them
    np.testing.assert_array_equal(plain.boxes, [[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10]])
    np.testing.assert_array_equal(plain.scores, out.scores)
    with pytest.raises(ValueError, match="merge rule must be one of fusion, nms"):
        merge(Detections.empty(), [(window, a)], 0.5, 100, (100, 100), rule="nmm")
