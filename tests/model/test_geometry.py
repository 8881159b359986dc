import numpy as np
import pytest

from keras_unet.model import geometry


def walk(n, depth, padding):
    """Brute force: push a size through the layer arithmetic, layer by layer.

    Returns the output size, or None where a layer gets an odd size before a
    2x2 pool or a non-positive size anywhere.
    """
    shrink = 2 if padding == "valid" else 0
    skips = []
    for _ in range(depth):
        for _ in range(2):
            n -= shrink
            if n < 1:
                return None
        if n % 2:
            return None
        skips.append(n)
        n //= 2
    for _ in range(2):
        n -= shrink
        if n < 1:
            return None
    for _ in range(depth):
        n *= 2
        if skips.pop() < n:  # the skip connection must cover the up-sampled map
            return None
        for _ in range(2):
            n -= shrink
            if n < 1:
                return None
    return n


DEPTHS = [1, 2, 3, 4, 5]
PADDINGS = ["valid", "same"]


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_validity_and_output_match_brute_force(depth, padding):
    for n in range(1, 700):
        expected = walk(n, depth, padding)
        assert geometry.is_valid_input_size(n, depth, padding) == (
            expected is not None
        ), n
        if expected is None:
            with pytest.raises(ValueError, match="not valid"):
                geometry.output_size(n, depth, padding)
        else:
            assert geometry.output_size(n, depth, padding) == expected


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_valid_input_sizes_and_neighbours_match_brute_force(depth, padding):
    valid = [n for n in range(1, 2000) if walk(n, depth, padding) is not None]
    assert geometry.valid_input_sizes(1, 1999, depth, padding) == valid
    assert geometry.min_input_size(depth, padding) == valid[0]
    assert geometry.step(depth, padding) == valid[1] - valid[0]
    rng = np.random.default_rng(depth)
    for lo, hi in rng.integers(1, 899, size=(50, 2)):
        lo, hi = sorted((int(lo), int(hi)))
        assert geometry.valid_input_sizes(lo, hi, depth, padding) == [
            n for n in valid if lo <= n <= hi
        ]
    for n in range(1, 800):
        # nearest: minimal distance, ties to the larger size
        best = min(valid, key=lambda v: (abs(v - n), -v))
        assert geometry.nearest_valid_input_size(n, depth, padding) == best
        # input_size_for_output: smallest valid input whose output >= n
        want = min(v for v in valid if walk(v, depth, padding) >= n)
        assert geometry.input_size_for_output(n, depth, padding) == want


@pytest.mark.parametrize("depth", DEPTHS)
def test_margin_is_half_the_shrinkage(depth):
    n = geometry.min_input_size(depth) + 3 * 2**depth
    assert walk(n, depth, "valid") == n - 2 * geometry.margin(depth)
    assert geometry.margin(depth, "same") == 0


def test_paper_numbers():
    assert geometry.margin(4) == 92
    assert geometry.output_size(572) == 388
    assert geometry.min_input_size(4) == 188
    assert geometry.valid_input_sizes(541, 600) == [556, 572, 588]
    assert [geometry.crop_per_side(level, 4) for level in (1, 2, 3, 4)] == [
        88,
        40,
        16,
        4,
    ]
    # The paper's Fig. 1 sizes for the 572 tile.
    sizes = [n for _, n in geometry.size_trace(572)]
    assert sizes == [
        572,
        570,
        568,
        284,
        282,
        280,
        140,
        138,
        136,
        68,
        66,
        64,
        32,
        30,
        28,
        56,
        54,
        52,
        104,
        102,
        100,
        200,
        198,
        196,
        392,
        390,
        388,
    ]


def test_error_names_rule_and_nearest_sizes():
    with pytest.raises(ValueError) as err:
        geometry.check_input_size(570)
    msg = str(err.value)
    assert "188 + 16k" in msg and "556 and 572" in msg
    assert "Received: input_size=570" in msg
    with pytest.raises(ValueError, match="smallest valid size is 188"):
        geometry.output_size(100)
    with pytest.raises(ValueError, match="multiples of 16"):
        geometry.output_size(250, padding="same")


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(input_size=572, depth=0), ValueError, "depth"),
        (dict(input_size=572, depth=2.0), TypeError, "depth"),
        (dict(input_size=572, padding="full"), ValueError, "padding"),
        (dict(input_size=572.0), TypeError, "input_size"),
        (dict(input_size=True), TypeError, "input_size"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        geometry.output_size(**kwargs)


def test_numpy_integers_accepted():
    assert geometry.output_size(np.int64(572), np.int32(4)) == 388
