"""Tests for keras_unet.evaluation.topology: simple points and the warping of
Fiji.

The lookup table is checked against the definition of a simple point
(connected components counted with scipy with and without the centre), and
`warp` against a line-by-line port of Fiji's sequential loop
(``WarpingError.simplePointWarp2d``) on continuous, 8-bit, binary and real
maps.
"""

import numpy as np
import pytest
from scipy import ndimage

from keras_unet.evaluation import topology
from keras_unet.io.images import read_image
from tests.evaluation.isbi_cases import (
    CROSS,
    SQUARE,
    soft_proposal,
    synthetic_label,
)

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
