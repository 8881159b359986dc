"""Tests for keras_unet.evaluation.isbi: the ISBI 2012 measures and SEG, in
numpy.

Every measure is checked on hand-made cases whose answer is known, and
against an independent, obviously-correct slow implementation written here:
a dictionary-based Rand index and a per-object loop for SEG.
scikit-image's adapted Rand error is a second reference for the Rand error.
The warping itself is checked against Fiji's loop in test_topology.
"""

import numpy as np
import pytest
from scipy import ndimage

from keras_unet.evaluation.isbi import (
    DEFAULT_THRESHOLDS,
    isbi_scores,
    mean_isbi_scores,
    pixel_error,
    rand_error,
    warping_error,
)
from keras_unet.evaluation.seg import seg_iou
from keras_unet.io.images import read_image
from tests.evaluation.isbi_cases import (
    CROSS,
    SQUARE,
    soft_proposal,
    straight_grid,
    synthetic_label,
    two_cells,
    wobbly_grid,
)

# ---------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------


def rand_reference(label, membrane):
    """Foreground-restricted Rand F-score, split and merge with dicts."""
    gt, _ = ndimage.label(np.asarray(label) != 0, CROSS)
    pred, _ = ndimage.label(~membrane, CROSS)
    joint, gt_size, pred_size = {}, {}, {}
    for i, (g, p) in enumerate(zip(gt.ravel(), pred.ravel())):
        if g == 0:
            continue  # ground-truth membrane is not scored
        q = p if p else ("singleton", i)
        joint[(g, q)] = joint.get((g, q), 0) + 1
        gt_size[g] = gt_size.get(g, 0) + 1
        pred_size[q] = pred_size.get(q, 0) + 1
    sp = sum(v * v for v in joint.values())
    st = sum(v * v for v in gt_size.values())
    ss = sum(v * v for v in pred_size.values())
    return 1 - 2 * sp / (st + ss), sp / st, sp / ss


def seg_reference(pred, gt):
    """SEG with one loop per ground-truth object."""
    scores = []
    for g in np.unique(gt):
        if g == 0:
            continue
        obj = gt == g
        ids, counts = np.unique(pred[obj], return_counts=True)
        score = 0.0
        for i, n in zip(ids, counts):
            if i != 0 and n > obj.sum() / 2:
                score = n / np.count_nonzero(obj | (pred == i))
        scores.append(score)
    return np.mean(scores) if scores else np.nan


# ---------------------------------------------------------------------------
# The warping error
# ---------------------------------------------------------------------------


def test_warping_perfect_proposal_is_zero():
    label = wobbly_grid()
    membrane = (label == 0).astype(np.float32)
    assert warping_error(membrane, label) == 0.0
    soft = np.where(label == 0, 0.8, 0.1)
    assert isbi_scores(soft, label)["warping_error"] == 0.0


def test_warping_gap_that_merges_two_cells():
    label = two_cells()
    prob = (label == 0).astype(float)
    prob[5, 8] = 0.0  # one-pixel gap: the two cells merge
    # the one ground-truth membrane pixel at the gap cannot be flipped
    assert warping_error(prob, label) == pytest.approx(1 / label.size)
    err, warped = warping_error(prob, label, return_warped=True)
    assert np.argwhere(warped != (prob < 0.5)).tolist() == [[5, 8]]


def test_warping_spurious_wall_that_splits_a_cell():
    label = np.full((16, 16), 255, np.uint8)
    prob = np.zeros((16, 16))
    prob[8, :] = 1.0  # a wall across the cell
    assert warping_error(prob, label) == pytest.approx(1 / label.size)
    diagonal = np.eye(16)[::-1]  # an 8-connected wall also splits
    assert warping_error(diagonal, label) == pytest.approx(1 / label.size)
    # an unfinished wall does not split: it is only a thicker boundary
    prob[8, 3] = 0.0
    assert warping_error(prob, label) == 0.0


def test_diagonal_membrane_separates_cells():
    """Cells are 4-connected, membranes 8-connected (the ISBI pair)."""
    staircase = np.full((12, 12), 255, np.uint8)
    for i in range(12):
        staircase[i, i] = 0
        if i + 1 < 12:
            staircase[i, i + 1] = 0
    diagonal = np.eye(12)  # the same wall, 8-connected only
    assert warping_error(diagonal, staircase) == 0.0
    assert rand_error(diagonal, staircase)["rand_merge_score"] == 1.0


@pytest.mark.parametrize("shift", [(0, 1), (1, 0), (1, 1)])
def test_warping_shifted_straight_boundary_is_free(shift):
    label = straight_grid()
    moved = straight_grid(shift=shift)
    assert np.count_nonzero(label != moved) > 500  # pixel errors abound
    assert warping_error(moved == 0, label) == 0.0


@pytest.mark.parametrize(
    "width, shift",
    [(1, (0, 1)), (1, (1, 0)), (3, (1, 1)), (4, (0, 2)), (4, (2, 2))],
)
def test_warping_shifted_wavy_boundary_is_nearly_free(width, shift):
    # At a few junctions the greedy relaxation (Jain et al., Fiji) gets
    # stuck on a pixel or two: "0 or nearly so".
    label = wobbly_grid(width=width)
    moved = wobbly_grid(width=width, shift=shift)
    disagree = np.count_nonzero(label != moved)
    assert disagree > 800
    assert warping_error(moved == 0, label) * label.size <= 0.005 * disagree


def test_warping_shift_beyond_the_thickness_is_counted():
    # Only disagreeing pixels are flipped (Jain et al., Fiji): a 1-pixel
    # line moved by 2 pixels cannot be warped, unlike a 4-pixel one.
    label = wobbly_grid(width=1)
    assert warping_error(wobbly_grid(width=1, shift=(0, 2)) == 0, label) > 0


@pytest.mark.parametrize("grow", [1, 2, 3])
@pytest.mark.parametrize("structure", [SQUARE, CROSS])
def test_warping_thickened_boundary_is_free(grow, structure):
    label = straight_grid()
    thick = ndimage.binary_dilation(label == 0, structure, iterations=grow)
    assert warping_error(thick, label) == 0.0
    soft = ndimage.gaussian_filter(thick.astype(float), 0.7)
    assert warping_error(soft / soft.max(), label) == 0.0


def test_warping_counts_cells_that_thickening_creates():
    # A 3x3 dilation at a wavy junction pinches off a 1-pixel cell: that is
    # a real topological change, and it is the only pixel counted.
    label = wobbly_grid()
    thick = ndimage.binary_dilation(label == 0, SQUARE)
    extra = ndimage.label(~thick, CROSS)[1] - ndimage.label(label, CROSS)[1]
    assert extra >= 1
    assert warping_error(thick, label) * label.size == extra
    soft = ndimage.gaussian_filter((label == 0).astype(float), 1.0)
    assert isbi_scores(soft / soft.max(), label)["warping_error"] == 0.0


def test_label_id_invariance():
    label = synthetic_label(5)
    prob = soft_proposal(label, 5)
    ref = isbi_scores(prob, label)
    for other in (label != 0, (label != 0) * 7, (label != 0).astype(float)):
        assert isbi_scores(prob, other) == ref
    # uint8 maps and bool maps are scaled/treated consistently
    assert isbi_scores(label == 0, label) == isbi_scores(
        (label == 0).astype(np.float32), label
    )


# ---------------------------------------------------------------------------
# Rand and pixel error
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_matches_dictionary_reference(seed):
    label = synthetic_label(seed, size=48)
    prob = soft_proposal(label, seed, noise=1.5)
    for t in (0.2, 0.5, 0.8):
        got = rand_error(prob, label, t)
        err, split, merge = rand_reference(label, prob >= t)
        assert got["rand_error"] == pytest.approx(err, rel=1e-12, abs=1e-15)
        assert got["rand_split_score"] == pytest.approx(split, rel=1e-12)
        assert got["rand_merge_score"] == pytest.approx(merge, rel=1e-12)


def test_rand_agrees_with_skimage_adapted_rand_error(shared_data):
    from skimage.metrics import adapted_rand_error

    d = shared_data / "isbi2012-em" / "train"
    label = read_image(d / "label" / "00.png")
    membrane = (label == 0).astype(float)
    for prob in (ndimage.gaussian_filter(membrane, 2.0), np.roll(membrane, 1)):
        ours = rand_error(prob, label, 0.5)
        gt = ndimage.label(label != 0, CROSS)[0]
        seg, n = ndimage.label(prob < 0.5, CROSS)
        lonely = seg == 0  # predicted membrane: one segment per pixel
        seg[lonely] = n + 1 + np.arange(np.count_nonzero(lonely))
        are, split, merge = adapted_rand_error(gt, seg)
        # skimage counts pairs of distinct pixels (n^2 - n), the challenge
        # squares probabilities (n^2): equal up to 1/segment size.
        assert ours["rand_error"] == pytest.approx(are, abs=1e-4)
        assert ours["rand_split_score"] == pytest.approx(split, abs=1e-4)
        assert ours["rand_merge_score"] == pytest.approx(merge, abs=1e-4)
        assert ours["rand_error"] > 0.01  # not a trivial comparison


def test_rand_gap_merges_and_wall_splits():
    label = two_cells()
    prob = (label == 0).astype(float)
    assert rand_error(prob, label)["rand_error"] == 0.0
    prob[5, 8] = 0.0
    merged = rand_error(prob, label)
    assert merged["rand_split_score"] == 1.0
    assert merged["rand_merge_score"] == pytest.approx(0.5, abs=0.01)
    wall = (label == 0).astype(float)
    wall[8, :] = 1.0
    split = rand_error(wall, label)
    assert split["rand_merge_score"] == 1.0 and split["rand_split_score"] < 1


def test_rand_predicted_membrane_rule():
    label = straight_grid((81, 81), shift=(-8, -8))  # 25 cells of 15x15
    thick = ndimage.binary_dilation(label == 0, SQUARE, iterations=1)
    singletons = rand_error(thick, label)
    nearest = rand_error(thick, label, predicted_membrane="nearest")
    # thick membranes are singletons: the split score suffers (each 15x15
    # cell keeps 13x13 = 169 pixels, the 56 others are singletons)...
    want_split = (169**2 + 56) / 225**2
    assert singletons["rand_split_score"] == pytest.approx(want_split)
    assert singletons["rand_merge_score"] == 1.0
    # ...but the cell partition itself is perfect
    assert nearest["rand_error"] == 0.0
    # nearest still sees a real merge
    gap = thick.copy()
    gap[14:19, :] = False  # remove a horizontal wall: cells merge
    merged = rand_error(gap, label, predicted_membrane="nearest")
    assert merged["rand_merge_score"] < 1 and merged["rand_split_score"] == 1


def test_rand_of_label_without_cells_is_nan():
    label = np.zeros((8, 8), np.uint8)
    scores = rand_error(np.zeros((8, 8)), label)
    assert all(np.isnan(v) for v in scores.values())


def test_pixel_error_hand_computed():
    label = two_cells(8)
    prob = np.zeros((8, 8))
    prob[:, 4:6] = 0.9
    assert pixel_error(prob, label) == 8 / 64
    assert pixel_error(prob, label, threshold=0.95) == 8 / 64  # all cell
    assert pixel_error(prob, label, threshold=0.9) == 8 / 64  # >= t
    assert pixel_error(label == 0, label) == 0.0


# ---------------------------------------------------------------------------
# isbi_scores
# ---------------------------------------------------------------------------


def test_isbi_scores_curves_and_best_thresholds():
    label = synthetic_label(7)
    prob = soft_proposal(label, 7)
    s = isbi_scores(prob, label)
    assert s["thresholds"] == list(DEFAULT_THRESHOLDS)
    curves = s["curves"]
    for i, t in enumerate(DEFAULT_THRESHOLDS):
        assert curves["pixel_error"][i] == pixel_error(prob, label, t)
        assert curves["warping_error"][i] == warping_error(prob, label, t)
        r = rand_error(prob, label, t)
        assert curves["rand_error"][i] == r["rand_error"]
        assert curves["rand_split_score"][i] == r["rand_split_score"]
    for name in ("pixel_error", "rand_error", "warping_error"):
        i = DEFAULT_THRESHOLDS.index(s[f"{name}_threshold"])
        assert s[name] == min(curves[name]) == curves[name][i]
    i = DEFAULT_THRESHOLDS.index(s["rand_error_threshold"])
    assert s["rand_merge_score"] == curves["rand_merge_score"][i]
    # a real trade-off: not every measure is best at the same threshold
    assert len(set(curves["pixel_error"])) > 1


def test_isbi_scores_ties_prefer_half_and_measure_subset():
    label = wobbly_grid()
    s = isbi_scores(label == 0, label, measures=("pixel", "rand"))
    assert "warping_error" not in s and "warping_error" not in s["curves"]
    assert s["pixel_error"] == 0.0 and s["pixel_error_threshold"] == 0.5
    s = isbi_scores(label == 0, label, thresholds=[0.2, 0.7])
    assert s["rand_error_threshold"] == 0.7  # a tie: the one closer to 0.5


def test_isbi_scores_on_real_slice(shared_data):
    d = shared_data / "isbi2012-em" / "train"
    label = read_image(d / "label" / "00.png")
    prob = ndimage.gaussian_filter((label == 0).astype(float), 1.0)
    s = isbi_scores(prob, label)
    assert s["warping_error"] < 1e-4  # topology kept by a mild blur
    assert s["rand_error"] < 0.01 and s["pixel_error"] < 0.01
    image = read_image(d / "image" / "00.png")
    poor = isbi_scores(1.0 - image / 255.0, label)
    assert poor["rand_error"] > 10 * s["rand_error"]
    assert poor["pixel_error"] > 10 * s["pixel_error"]


def test_mean_isbi_scores_takes_one_threshold_for_the_set():
    labels = [synthetic_label(s, size=48) for s in (20, 21)]
    labels.append(np.zeros((48, 48), np.uint8))  # no cells: Rand is NaN
    per_image = [
        isbi_scores(
            soft_proposal(y, i, noise=1.5), y, measures=("pixel", "rand")
        )
        for i, y in enumerate(labels)
    ]
    mean = mean_isbi_scores(per_image)
    for name in ("pixel_error", "rand_error"):
        rows = np.array([s["curves"][name] for s in per_image])
        curve = np.nanmean(rows, axis=0)  # the image without cells skipped
        np.testing.assert_allclose(mean["curves"][name], curve)
        i = DEFAULT_THRESHOLDS.index(mean[f"{name}_threshold"])
        assert mean[name] == pytest.approx(curve.min()) == curve[i]
    assert "warping_error" not in mean
    with pytest.raises(ValueError, match="empty"):
        mean_isbi_scores([])
    other = isbi_scores(np.zeros((8, 8)), two_cells(8), thresholds=[0.5])
    with pytest.raises(ValueError, match="same thresholds"):
        mean_isbi_scores([per_image[0], other])


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


def test_shape_mismatch_is_explained():
    label = np.full((572, 572), 255, np.uint8)
    with pytest.raises(ValueError, match=r"184 px smaller.*92 px"):
        isbi_scores(np.zeros((388, 388)), label)
    with pytest.raises(ValueError, match=r"Received: membrane_prob.shape"):
        pixel_error(np.zeros((10, 12)), np.zeros((12, 10)))


def test_probabilities_outside_unit_interval_are_explained():
    label = two_cells()
    logits = np.random.default_rng(0).normal(0, 3, label.shape)
    with pytest.raises(ValueError, match=r"soft-max.*Received: min="):
        isbi_scores(logits, label)
    with pytest.raises(ValueError, match=r"outside, by up to 0\.5"):
        warping_error(np.full(label.shape, 1.5), label)
    with pytest.raises(ValueError, match="to_float_image"):
        pixel_error(np.full(label.shape, 200, np.uint8), label)
    nan = np.zeros(label.shape)
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        rand_error(nan, label)
    # float32 rounding of a soft-max is tolerated
    ok = np.full(label.shape, 1 + 1e-7, np.float32)
    assert pixel_error(ok, label) == pytest.approx(15 / 16)


def test_non_binary_labels_are_rejected():
    prob = np.zeros((8, 8))
    label = np.tile(np.array([0, 128, 255], np.uint8), (8, 3))[:, :8]
    with pytest.raises(ValueError, match=r"3 distinct values.*JPEG"):
        isbi_scores(prob, label)
    with pytest.raises(ValueError, match="membranes must be 0"):
        pixel_error(prob, np.where(label > 0, 255, 128).astype(np.uint8))
    with pytest.raises(ValueError, match="colour"):
        pixel_error(prob, np.random.default_rng(0).random((8, 8, 3)))
    with pytest.raises(ValueError, match=r"p\[\.\.\., 0\]"):
        pixel_error(np.zeros((8, 8, 2)), two_cells(8))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thresholds": []}, "non-empty"),
        ({"thresholds": [0.5, 1.5]}, r"\[0, 1\]"),
        ({"measures": ("pixel", "dice")}, "subset"),
        ({"predicted_membrane": "ignore"}, "singletons"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        isbi_scores(np.zeros((8, 8)), two_cells(8), **kwargs)


# ---------------------------------------------------------------------------
# seg_iou
# ---------------------------------------------------------------------------


def test_seg_iou_hand_computed():
    gt = np.zeros((6, 6), int)
    gt[:3, :3] = 1
    gt[3:, 3:] = 2
    pred = np.zeros((6, 6), int)
    pred[:3, :2] = 7  # covers 6 of 9 pixels of object 1
    pred[3:, 3:5] = 9  # covers 6 of 9 of object 2 ...
    pred[5, 0] = 9  # ... plus one pixel outside it
    assert seg_iou(pred, gt) == pytest.approx((6 / 9 + 6 / 10) / 2)
    assert seg_iou(gt, gt) == 1.0
    assert seg_iou(np.zeros_like(gt), gt) == 0.0


def test_seg_iou_needs_more_than_half():
    gt = np.zeros((2, 4), int)
    gt[0] = 1  # 4 pixels
    pred = np.zeros((2, 4), int)
    pred[0, :2] = 5  # exactly half: no match
    assert seg_iou(pred, gt) == 0.0
    pred[0, 2] = 5  # 3 of 4
    assert seg_iou(pred, gt) == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seg_iou_matches_reference_and_is_id_invariant(seed):
    from keras_unet.data.synthetic import synthetic_cells

    _, inst = synthetic_cells(2, size=64, seed=seed)
    gt = inst[0]
    rng = np.random.default_rng(seed)
    # a prediction: shifted, some cells merged, some dropped
    pred = np.roll(gt, (1, 2), axis=(0, 1))
    pred[pred == 3] = 4
    pred[pred == 5] = 0
    assert seg_iou(pred, gt) == pytest.approx(seg_reference(pred, gt))
    perm = np.concatenate([[0], rng.permutation(1000)[: gt.max()] + 1])
    perm_p = np.concatenate([[0], rng.permutation(5000)[: pred.max()] + 7])
    assert seg_iou(perm_p[pred], perm[gt]) == pytest.approx(seg_iou(pred, gt))
    assert seg_iou(pred.astype(np.uint16), gt.astype(float)) == pytest.approx(
        seg_iou(pred, gt)
    )


def test_seg_iou_edge_cases():
    assert np.isnan(seg_iou(np.ones((4, 4), int), np.zeros((4, 4), int)))
    with pytest.raises(ValueError, match="same shape"):
        seg_iou(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="integer object ids"):
        seg_iou(np.full((4, 4), 0.5), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="negative"):
        seg_iou(np.full((4, 4), -1), np.zeros((4, 4), int))
    # 3D instance volumes work too
    gt = np.zeros((3, 4, 4), int)
    gt[1:, 1:, 1:] = 2
    assert seg_iou(gt, gt) == 1.0
