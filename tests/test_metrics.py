"""Tests for keras_unet.metrics and keras_unet.topology.

Every measure is checked on hand-made cases whose answer is known, and
against an independent, obviously-correct slow implementation written here:
a brute-force simple-point definition (connected components counted with
scipy), a line-by-line port of Fiji's sequential warping loop, a
dictionary-based Rand index, a per-object loop for SEG, and plain numpy for
the Keras metrics. scikit-image's adapted Rand error is a second reference
for the Rand error.
"""

import json

import keras
import numpy as np
import pytest
from scipy import ndimage

from keras_unet import geometry, topology
from keras_unet.io import read_image, write_image
from keras_unet.metrics import (
    DEFAULT_THRESHOLDS,
    ForegroundIoU,
    PixelError,
    evaluate_folders,
    isbi_scores,
    pixel_error,
    rand_error,
    seg_iou,
    warping_error,
)
from keras_unet.model import build_unet

CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]])
SQUARE = np.ones((3, 3), int)


# ---------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------


def brute_force_simple(patch) -> bool:
    """Simple point by definition: flipping the centre of the 3x3 patch
    changes neither the number of 4-connected foreground components nor the
    number of 8-connected background components of the patch."""
    counts = []
    for centre in (1, 0):
        p = np.array(patch, int)
        p[1, 1] = centre
        counts.append(
            (ndimage.label(p, CROSS)[1], ndimage.label(1 - p, SQUARE)[1])
        )
    return counts[0] == counts[1]


_BRUTE_CACHE = {}


def _simple_cached(patch):
    key = patch.tobytes()
    if key not in _BRUTE_CACHE:
        _BRUTE_CACHE[key] = brute_force_simple(patch)
    return _BRUTE_CACHE[key]


def fiji_warp_reference(source, target, confidence):
    """Line-by-line port of Fiji's WarpingError.simplePointWarp2d loop.

    Pad with 0; repeat: list the mismatches in x-outer / y-inner scan order,
    stable-sort them by float32 confidence (descending), visit them one by
    one and flip each that is simple now; stop when the mismatch count no
    longer changes.
    """
    h, w = source.shape
    s = np.zeros((h + 2, w + 2), np.int64)
    s[1:-1, 1:-1] = source
    t = np.zeros((h + 2, w + 2), np.int64)
    t[1:-1, 1:-1] = target
    c = np.zeros((h + 2, w + 2), np.float32)
    c[1:-1, 1:-1] = confidence
    before = None
    while True:
        mismatches = [
            (x, y)
            for x in range(1, w + 1)
            for y in range(1, h + 1)
            if s[y, x] != t[y, x]
        ]
        if not mismatches or len(mismatches) == before:
            break
        before = len(mismatches)
        mismatches.sort(key=lambda p: -c[p[1], p[0]])
        for x, y in mismatches:
            patch = s[y - 1 : y + 2, x - 1 : x + 2].copy()
            patch[1, 1] = 0
            if _simple_cached(patch):
                s[y, x] = 1 - s[y, x]
    return s[1:-1, 1:-1].astype(bool)


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
# Hand-made labels
# ---------------------------------------------------------------------------


def wobbly_grid(shape=(96, 96), width=1, shift=(0, 0), period=24):
    """ISBI-style label (0 = membrane, 255 = cell): a grid of wavy lines,
    one pixel per row (column) for width 1, away from the image border.
    `shift` translates the whole pattern by (dy, dx) pixels."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(float)
    y, x = y - shift[0], x - shift[1]
    vertical = (x - 12 + 3 * np.sin(y / 7)) % period < width
    horizontal = (y - 12 + 3 * np.sin(x / 9)) % period < width
    return np.where(vertical | horizontal, 0, 255).astype(np.uint8)


def straight_grid(shape=(96, 96), width=1, shift=(0, 0), period=16):
    """Rectangular cells between straight lines (no acute corners)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    y, x = y - shift[0], x - shift[1]
    lines = ((x - 8) % period < width) | ((y - 8) % period < width)
    return np.where(lines, 0, 255).astype(np.uint8)


def two_cells(size=16):
    label = np.full((size, size), 255, np.uint8)
    label[:, size // 2] = 0
    return label


def synthetic_label(seed, size=64):
    """A binary ISBI-style label from keras_unet's synthetic cells."""
    from keras_unet.datasets import synthetic_cells

    _, inst = synthetic_cells(1, size=size, seed=seed)
    inst = inst[0]
    edge = np.zeros(inst.shape, bool)
    edge[:-1] |= inst[:-1] != inst[1:]
    edge[:, :-1] |= inst[:, :-1] != inst[:, 1:]
    return np.where((inst > 0) & ~edge, 255, 0).astype(np.uint8)


def soft_proposal(label, seed, noise=1.0, sigma=1.5):
    rng = np.random.default_rng(seed)
    mem = (label == 0).astype(float)
    field = ndimage.gaussian_filter(rng.normal(0, noise, mem.shape), sigma)
    return np.clip(ndimage.gaussian_filter(mem, sigma) + field, 0, 1)


# ---------------------------------------------------------------------------
# Simple points and warping
# ---------------------------------------------------------------------------


def test_simple_lut_matches_brute_force_definition():
    for code in range(256):
        patch = np.zeros((3, 3), int)
        for bit, (dy, dx) in enumerate(topology.NEIGHBOUR_OFFSETS):
            patch[1 + dy, 1 + dx] = (code >> bit) & 1
        assert topology.SIMPLE_LUT[code] == brute_force_simple(patch), code


def test_simple_lut_known_cases():
    lut, offs = topology.SIMPLE_LUT, topology.NEIGHBOUR_OFFSETS

    def code(ones):
        return sum(1 << offs.index(o) for o in ones)

    assert not lut[code([])]  # isolated pixel: deleting removes an object
    assert not lut[code(offs)]  # interior pixel: deleting makes a hole
    assert lut[code([(-1, 0)])]  # end of a line
    assert not lut[code([(-1, 0), (1, 0)])]  # middle of a line: a bridge
    # Diagonal neighbours only: 4-connected foreground does not join them.
    assert not lut[code([(-1, -1)])]


def test_neighbour_codes_match_patches():
    rng = np.random.default_rng(0)
    mask = rng.random((9, 11)) < 0.5
    codes = topology.neighbour_codes(mask)
    padded = np.pad(mask, 1)
    for y in range(9):
        for x in range(11):
            expect = sum(
                int(padded[1 + y + dy, 1 + x + dx]) << bit
                for bit, (dy, dx) in enumerate(topology.NEIGHBOUR_OFFSETS)
            )
            assert codes[y, x] == expect


@pytest.mark.parametrize("kind", ["continuous", "uint8", "binary"])
@pytest.mark.parametrize("seed", [0, 1])
def test_warp_equals_fiji_sequential_loop(kind, seed):
    label = synthetic_label(seed, size=56)
    prob = soft_proposal(label, seed)
    if kind == "uint8":  # many ties, broken by Fiji's scan order
        prob = np.round(prob * 255) / 255
    elif kind == "binary":  # all confidences tie
        prob = np.roll(label == 0, 1, axis=1) | (
            np.random.default_rng(seed).random(label.shape) < 0.03
        )
        prob = prob.astype(float)
    cells = label != 0
    for t in (0.3, 0.5, 0.7):
        target = prob < t
        conf = np.abs(prob - t)
        ours = topology.warp(cells, target, conf)
        ref = fiji_warp_reference(cells, target, conf)
        np.testing.assert_array_equal(ours, ref)


def test_warp_equals_fiji_loop_on_real_isbi_crop(shared_data):
    d = shared_data / "isbi2012-em" / "train"
    label = read_image(d / "label" / "03.png")[200:264, 300:364]
    image = read_image(d / "image" / "03.png")[200:264, 300:364]
    prob = 1.0 - image / 255.0  # dark membranes: a poor, tie-rich map
    for t in (0.4, 0.6):
        target, conf = prob < t, np.abs(prob - t)
        ours = topology.warp(label != 0, target, conf)
        ref = fiji_warp_reference(label != 0, target, conf)
        np.testing.assert_array_equal(ours, ref)


def test_warp_keeps_topology_and_moves_toward_target():
    label = synthetic_label(3, size=64)
    prob = soft_proposal(label, 3, noise=2.0)
    cells, target = label != 0, prob < 0.5
    warped = topology.warp(cells, target, np.abs(prob - 0.5))

    def components(c):  # 4-connected cells; 8-connected membrane + outside
        membrane = np.pad(~c, 1, constant_values=True)
        return ndimage.label(c, CROSS)[1], ndimage.label(membrane, SQUARE)[1]

    assert components(warped) == components(cells)
    assert components(target) != components(cells)  # the proposal's differs
    changed = warped != cells
    assert changed.sum() > 100 and np.all(warped[changed] == target[changed])


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
    from keras_unet.datasets import synthetic_cells

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


# ---------------------------------------------------------------------------
# Keras metrics
# ---------------------------------------------------------------------------


def _numpy_metrics(labels, logits, weights, class_id=1):
    if logits.shape[-1] == 1:
        pred = (logits[..., 0] > 0).astype(int)
    else:
        pred = logits.argmax(-1)
    p, t = pred == class_id, labels == class_id
    iou = np.sum(weights * (p & t)) / np.sum(weights * (p | t))
    err = np.sum(weights * (pred != labels)) / np.sum(weights)
    return iou, err


def _run(metric, *args, **kwargs):
    metric.reset_state()
    metric.update_state(*args, **kwargs)
    return float(keras.ops.convert_to_numpy(metric.result()))


@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_keras_metrics_match_numpy_for_every_label_format(num_classes):
    rng = np.random.default_rng(num_classes)
    logits = rng.normal(size=(2, 5, 6, num_classes)).astype("float32")
    labels = rng.integers(0, max(num_classes, 2), size=(2, 5, 6))
    weight = rng.uniform(0, 2, size=(2, 5, 6)).astype("float32")
    weight[0, 0] = 0.0
    ones = np.ones_like(weight)
    iou, err = _numpy_metrics(labels, logits, ones)
    iou_w, err_w = _numpy_metrics(labels, logits, (weight > 0) * 1.0)
    iou_m, err_m = ForegroundIoU(), PixelError()
    cases = [
        ((labels, logits), {}, iou, err),
        ((labels[..., None].astype("float32"), logits), {}, iou, err),
        ((labels, logits), {"sample_weight": weight}, iou_w, err_w),
        ((np.stack([labels, weight], -1), logits), {}, iou_w, err_w),
    ]
    for args, kwargs, want_iou, want_err in cases:
        assert _run(iou_m, *args, **kwargs) == pytest.approx(want_iou, 1e-5)
        assert _run(err_m, *args, **kwargs) == pytest.approx(want_err, 1e-5)
    # one-hot labels, with the weight map as an extra channel
    k = max(num_classes, 2) if num_classes > 1 else 1
    onehot = np.eye(k)[labels] if k > 1 else labels[..., None]
    with_w = np.concatenate([onehot, weight[..., None]], -1)
    dense_iou, dense_err = ForegroundIoU(sparse=False), PixelError(False)
    assert _run(dense_iou, onehot, logits) == pytest.approx(iou, 1e-5)
    assert _run(dense_err, with_w, logits) == pytest.approx(err_w, 1e-5)
    # per-image sample weights broadcast over pixels
    per_image = np.array([0.0, 1.0], "float32")
    want = _numpy_metrics(
        labels[1:], logits[1:], np.ones_like(weight[1:]), class_id=0
    )
    membrane_iou = ForegroundIoU(class_id=0)
    got = _run(membrane_iou, labels, logits, sample_weight=per_image)
    assert got == pytest.approx(want[0], 1e-5)


def test_keras_metrics_accumulate_over_batches():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 6, 6, 2)).astype("float32")
    labels = rng.integers(0, 2, size=(4, 6, 6))
    metric = ForegroundIoU()
    for i in range(4):
        metric.update_state(labels[i : i + 1], logits[i : i + 1])
    whole = _numpy_metrics(labels, logits, np.ones(labels.shape))[0]
    assert float(metric.result()) == pytest.approx(whole, 1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_keras_metric_errors():
    logits = np.zeros((1, 4, 4, 2), "float32")
    with pytest.raises(ValueError, match=r"crop the labels.*Received"):
        ForegroundIoU().update_state(np.zeros((1, 6, 6)), logits)
    with pytest.raises(ValueError, match="sparse=True"):
        PixelError().update_state(np.zeros((1, 4, 4, 3)), logits)
    with pytest.raises(ValueError, match="sparse=False"):
        PixelError(sparse=False).update_state(np.zeros((1, 4, 4)), logits)
    with pytest.raises(ValueError, match="class_id"):
        ForegroundIoU(class_id=-1)


@pytest.mark.parametrize("cls", [ForegroundIoU, PixelError])
def test_keras_metric_serialization_round_trip(cls):
    kwargs = {"sparse": False, "weighted": True, "name": "m"}
    if cls is ForegroundIoU:
        kwargs["class_id"] = 0
    metric = cls(**kwargs)
    config = metric.get_config()
    assert {k: config[k] for k in kwargs} == kwargs
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(metric)
    )
    assert type(again) is cls and again.get_config() == config
    assert keras.saving.get_registered_name(cls) == f"keras_unet>{cls.__name__}"


def test_keras_metrics_in_fit_evaluate_and_keras_file(tmp_path):
    depth, size = 2, 60
    out = geometry.output_size(size, depth)
    model = build_unet(
        (size, size, 1), depth=depth, filters=4, dropout=0.0, seed=0
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[PixelError(name="all_pixels_error")],
        weighted_metrics=[ForegroundIoU(), PixelError()],
    )
    rng = np.random.default_rng(0)
    x = rng.random((4, size, size, 1)).astype("float32")
    y = rng.integers(0, 2, size=(4, out, out))
    w = rng.uniform(0.5, 2.0, size=(4, out, out)).astype("float32")
    w[:, :5] = 0.0  # ignored rows
    model.fit(x, y, sample_weight=w, batch_size=2, epochs=1, verbose=0)
    got = model.evaluate(
        x, y, sample_weight=w, batch_size=2, verbose=0, return_dict=True
    )
    logits = model.predict(x, verbose=0)
    iou, err = _numpy_metrics(y, logits, (w > 0).astype(float))
    assert got["foreground_iou"] == pytest.approx(iou, rel=1e-5)
    assert got["pixel_error"] == pytest.approx(err, rel=1e-5)
    _, err_all = _numpy_metrics(y, logits, np.ones_like(w))
    assert got["all_pixels_error"] == pytest.approx(err_all, rel=1e-5)
    assert abs(err_all - err) > 1e-4  # the ignored rows did matter

    path = tmp_path / "unet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects
    again = loaded.evaluate(
        x, y, sample_weight=w, batch_size=2, verbose=0, return_dict=True
    )
    for key in ("foreground_iou", "pixel_error", "all_pixels_error"):
        assert again[key] == pytest.approx(got[key], rel=1e-6)


def test_keras_metrics_weighted_option():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 5, 2)).astype("float32")
    labels = rng.integers(0, 2, size=(2, 5, 5))
    weight = rng.uniform(0, 3, size=(2, 5, 5)).astype("float32")
    weight[:, 0] = 0
    packed = np.stack([labels, weight], -1)
    mask = (weight > 0).astype(float)
    for weighted, w in ((False, mask), (True, weight)):
        iou, err = _numpy_metrics(labels, logits, w)
        assert _run(ForegroundIoU(weighted=weighted), packed, logits) == (
            pytest.approx(iou, 1e-5)
        )
        assert _run(PixelError(weighted=weighted), packed, logits) == (
            pytest.approx(err, 1e-5)
        )


# ---------------------------------------------------------------------------
# evaluate_folders
# ---------------------------------------------------------------------------


def _folders(tmp_path, n=3):
    probs, labels = tmp_path / "probs", tmp_path / "labels"
    probs.mkdir()
    labels.mkdir()
    expected = {}
    for i in range(n):
        label = synthetic_label(10 + i, size=48)
        prob = soft_proposal(label, i).astype(np.float32)
        write_image(labels / f"{i:02d}.png", label)
        if i == 0:
            np.save(probs / f"{i:02d}.npy", prob)
        else:
            write_image(probs / f"{i:02d}.tif", prob)
        expected[f"{i:02d}"] = isbi_scores(prob, label)
    return probs, labels, expected


def test_evaluate_folders_report(tmp_path):
    probs, labels, expected = _folders(tmp_path)
    write_image(labels / "99.png", synthetic_label(1, size=48))  # no map
    report = evaluate_folders(probs, labels, tmp_path / "out")
    assert [r["name"] for r in report["images"]] == ["00", "01", "02"]
    for row in report["images"]:
        for key, value in expected[row["name"]].items():
            assert row[key] == value
    assert report["labels_without_map"] == ["99"]
    mean = report["mean"]
    for name in ("pixel_error", "rand_error", "warping_error"):
        curve = np.mean([e["curves"][name] for e in expected.values()], 0)
        np.testing.assert_allclose(mean["curves"][name], curve)
        assert mean[name] == pytest.approx(curve.min())
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["mean"]["rand_error"] == pytest.approx(mean["rand_error"])
    assert saved["settings"]["thresholds"] == list(DEFAULT_THRESHOLDS)
    lines = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("name,pixel_error,pixel_error_threshold")
    assert [line.split(",")[0] for line in lines[1:]] == [
        "00",
        "01",
        "02",
        "mean",
    ]
    assert float(lines[-1].split(",")[1]) == pytest.approx(
        mean["pixel_error"], rel=1e-5
    )
    assert not [p for p in (tmp_path / "out").iterdir() if p.name[0] == "."]


def test_evaluate_folders_label_without_cells(tmp_path):
    probs, labels, expected = _folders(tmp_path, n=2)
    write_image(labels / "09.png", np.zeros((48, 48), np.uint8))
    write_image(probs / "09.tif", np.ones((48, 48), np.float32))
    seen = []
    report = evaluate_folders(
        probs, labels, tmp_path / "out", on_image=lambda *a: seen.append(a)
    )
    assert [(i, n, row["name"]) for i, n, row in seen] == [
        (0, 3, "00"),
        (1, 3, "01"),
        (2, 3, "09"),
    ]
    assert np.isnan(report["images"][2]["rand_error"])
    assert report["images"][2]["pixel_error"] == 0.0
    # the mean Rand curve skips the image without cells
    curve = np.mean([e["curves"]["rand_error"] for e in expected.values()], 0)
    np.testing.assert_allclose(report["mean"]["curves"]["rand_error"], curve)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["images"][2]["rand_error"] is None  # NaN -> null
    row = (tmp_path / "out" / "metrics.csv").read_text().splitlines()[3]
    assert row.startswith("09,0,") and ",," in row


def test_evaluate_folders_channels_invert_and_8bit(tmp_path):
    probs, labels = tmp_path / "p", tmp_path / "l"
    probs.mkdir()
    labels.mkdir()
    label = synthetic_label(4, size=48)
    membrane = soft_proposal(label, 4)
    write_image(labels / "a.png", label)
    softmax = np.stack([membrane, 1 - membrane], -1).astype(np.float32)
    write_image(probs / "a.tif", softmax)  # (H, W, 2), membrane first
    two = evaluate_folders(probs, labels, measures="pixel")
    cell = evaluate_folders(
        probs, labels, measures="pixel", channel=1, invert=True
    )
    want = isbi_scores(membrane, label, measures="pixel")["pixel_error"]
    assert two["mean"]["pixel_error"] == pytest.approx(want)
    assert cell["mean"]["pixel_error"] == pytest.approx(want)
    (probs / "a.tif").unlink()
    write_image(probs / "a.png", np.round(membrane * 255).astype(np.uint8))
    eight = evaluate_folders(probs, labels, measures="pixel")
    assert eight["mean"]["pixel_error"] == pytest.approx(want, abs=0.01)


def test_evaluate_folders_errors(tmp_path):
    probs, labels, _ = _folders(tmp_path, n=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_folders(tmp_path / "nope", labels)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No probability maps"):
        evaluate_folders(empty, labels)
    write_image(probs / "07.tif", np.zeros((48, 48), np.float32))
    with pytest.raises(ValueError, match=r"no label.*07"):
        evaluate_folders(probs, labels)
    write_image(labels / "07.png", np.full((40, 40), 255, np.uint8))
    with pytest.raises(ValueError, match=r"07\.tif / 07\.png: .*same"):
        evaluate_folders(probs, labels)
    write_image(labels / "07.tif", np.full((48, 48), 255, np.uint8))
    with pytest.raises(ValueError, match="same name stem"):
        evaluate_folders(probs, labels)
    (labels / "07.tif").unlink()
    write_image(labels / "07.png", np.full((48, 48), 255, np.uint8))
    write_image(probs / "07.tif", np.full((48, 48), 3.0, np.float32))
    with pytest.raises(ValueError, match=r"07\.tif.*soft-max"):
        evaluate_folders(probs, labels, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
