"""Tests for keras_unet.inference.tta: the D4 transforms against numpy, on
arrays and on TensorFlow tensors (the exported graph uses the same function)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_unet.inference.tta import (
    TTA_PRESETS,
    TTA_TRANSFORMS,
    average_over_transforms,
    dihedral_transform,
    resolve_tta,
)

A = np.arange(12).reshape(3, 4)
NUMPY = {
    "identity": A,
    "rot90": np.rot90(A, 1),
    "rot180": np.rot90(A, 2),
    "rot270": np.rot90(A, 3),
    "flip_lr": np.fliplr(A),
    "flip_ud": np.flipud(A),
    "transpose": A.T,
    "anti_transpose": np.rot90(A, 2).T,
}


def test_dihedral_transforms_match_numpy():
    assert set(NUMPY) == set(TTA_TRANSFORMS)
    seen = set()
    for name, want in NUMPY.items():
        t = dihedral_transform(A, name)
        np.testing.assert_array_equal(t, want)
        np.testing.assert_array_equal(
            dihedral_transform(t, name, inverse=True), A
        )
        seen.add(t.tobytes() + bytes(t.shape))
    assert len(seen) == 8  # the 8 group elements are distinct
    batch = np.stack([A, A + 1])[..., None]
    np.testing.assert_array_equal(
        dihedral_transform(batch, "rot90", axes=(1, 2))[1, ..., 0],
        np.rot90(A + 1),
    )


@pytest.mark.parametrize("name", sorted(TTA_TRANSFORMS))
def test_dihedral_transforms_on_tensors_equal_numpy(name):
    image = np.random.default_rng(0).random((5, 7, 3))
    want = dihedral_transform(image, name)
    got = dihedral_transform(tf.constant(image), name, xp=tf)
    np.testing.assert_array_equal(got.numpy(), want)
    back = dihedral_transform(got, name, inverse=True, xp=tf)
    np.testing.assert_array_equal(back.numpy(), image)


def test_average_over_transforms_maps_back_before_averaging():
    image = np.random.default_rng(1).random((4, 6, 1))
    names = TTA_PRESETS["d4"]
    # An equivariant prediction comes back unchanged ...
    same = average_over_transforms(lambda x, name: 2 * x, image, names)
    np.testing.assert_allclose(same, 2 * image)
    # ... one that looks at the first row only is averaged over the 8 views.
    seen = []

    def first_row(x, name):
        seen.append(name)
        return np.broadcast_to(x[:1], x.shape)

    got = average_over_transforms(first_row, image, ["identity", "flip_ud"])
    assert seen == ["identity", "flip_ud"]
    want = (
        np.broadcast_to(image[:1], image.shape)
        + np.broadcast_to(image[-1:], image.shape)
    ) / 2
    np.testing.assert_allclose(got, want)
    tensor = average_over_transforms(
        lambda x, name: 2 * x, tf.constant(image), names, xp=tf
    )
    np.testing.assert_allclose(tensor.numpy(), 2 * image)


def test_resolve_tta():
    assert resolve_tta(None) == ("identity",)
    assert resolve_tta(False) == ("identity",)
    assert len(resolve_tta(True)) == 8
    assert set(resolve_tta("d4")) == set(TTA_TRANSFORMS)
    assert resolve_tta("rotations") == TTA_PRESETS["rotations"]
    assert resolve_tta("rot90") == ("rot90",)
    with pytest.raises(ValueError, match="Unknown test-time transform 'rot45'"):
        resolve_tta(["rot90", "rot45"])
    with pytest.raises(ValueError, match="Unknown test-time transform 'spin'"):
        resolve_tta("spin")
    with pytest.raises(ValueError, match="twice"):
        resolve_tta(["rot90", "rot90"])
    with pytest.raises(ValueError, match="non-empty"):
        resolve_tta([])
    with pytest.raises(ValueError, match="Unknown transform"):
        dihedral_transform(A, "rot45")
