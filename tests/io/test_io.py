import os

import numpy as np
import pytest

from keras_unet import figures
from keras_unet.data.normalize import to_float_image
from keras_unet.io.atomic import atomic_path
from keras_unet.io.images import read_array, read_image, write_image


def test_to_float_image_scales_by_dtype():
    np.testing.assert_allclose(
        to_float_image(np.array([0, 51, 255], np.uint8)), [0, 0.2, 1]
    )
    np.testing.assert_allclose(
        to_float_image(np.array([0, 65535], np.uint16)), [0, 1]
    )
    np.testing.assert_array_equal(
        to_float_image(np.array([True, False])), [1, 0]
    )
    f = np.array([0.5, 3.0], np.float64)
    out = to_float_image(f)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, f)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_float_image_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_float_image(np.array([[0.0, bad]]))


def test_to_float_image_rejects_empty_and_strings():
    with pytest.raises(ValueError, match="empty"):
        to_float_image(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="dtype"):
        to_float_image(np.array(["a"]))


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize(
    "image",
    [
        np.arange(60, dtype=np.uint8).reshape(6, 10),
        (np.arange(60, dtype=np.uint16) * 1000).reshape(6, 10),
        np.dstack([np.full((6, 10), v, np.uint8) for v in (10, 20, 30)]),
    ],
)
def test_image_round_trip(tmp_path, suffix, image):
    path = write_image(tmp_path / f"a{suffix}", image)
    back = read_image(path)
    np.testing.assert_array_equal(back, image)  # RGB order preserved


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such image"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Could not read"):
        read_image(tmp_path / "junk.png")


def test_figures_grid_and_plot(tmp_path):
    grey = np.linspace(0, 1, 400).reshape(20, 20)
    inst = np.zeros((20, 30), int)
    inst[2:8, 2:8] = 3
    colored = figures.color_instances(inst)
    assert colored.dtype == np.uint8 and colored[0, 0].tolist() == [0, 0, 0]
    assert colored[3, 3].max() >= 70
    grid = figures.panel_grid([grey, colored], ["a", "b"], ncols=1)
    assert grid.ndim == 3 and grid.shape[1] >= 30
    plot = figures.line_plot(
        {"loss": ([1, 2, 3], [3.0, 2.0, 1.5])}, "t", "x", "y"
    )
    assert plot.shape == (420, 640, 3) and (plot != 255).any()
    rgba = np.zeros((5, 6, 4), np.uint8)
    assert figures.panel_grid([rgba, np.zeros((5, 6, 2))]).ndim == 3
    path = figures.save_panels(tmp_path / "f.png", [grey, colored])
    assert read_image(path).shape[-1] == 3


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.uint32])
def test_to_float_image_refuses_ambiguous_integer_types(dtype):
    with pytest.raises(ValueError, match="ambiguous.*astype"):
        to_float_image(np.array([[0, 128, 255]], dtype))


def test_write_image_rgba_and_float_png(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[..., 3] = 200
    back = read_image(write_image(tmp_path / "a.png", rgba))
    np.testing.assert_array_equal(back, rgba)
    with pytest.raises(ValueError, match="write a .tif"):
        write_image(tmp_path / "p.png", np.zeros((4, 4), np.float32))
    assert not (tmp_path / "p.png").exists()
    np.testing.assert_array_equal(
        read_array(
            write_image(tmp_path / "p.tif", np.eye(3, dtype=np.float32))
        ),
        np.eye(3),
    )
    with open(tmp_path / "x.NPY", "wb") as f:  # np.save would add ".npy"
        np.save(f, np.arange(3))
    np.testing.assert_array_equal(read_array(tmp_path / "x.NPY"), np.arange(3))


def test_list_files_and_files_by_stem(tmp_path):
    from keras_unet.io.files import files_by_stem, list_files

    for name in ("b.PNG", "a.tif", ".a.tmp.png", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "d.png").mkdir()
    assert [p.name for p in list_files(tmp_path)] == ["a.tif", "b.PNG"]
    assert set(files_by_stem(list_files(tmp_path), tmp_path)) == {"a", "b"}
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="share a name stem 'a'"):
        files_by_stem(list_files(tmp_path), tmp_path)


def test_a_truncated_tiff_is_named_in_one_line(tmp_path):
    import tifffile

    whole = tmp_path / "whole.tif"
    tifffile.imwrite(
        whole, np.arange(200 * 200, dtype=np.uint16).reshape(200, 200)
    )
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(
        ValueError, match=r"Could not read .*cut\.tif as a TIFF"
    ):
        read_image(cut)


def test_color_matched_gives_each_segment_its_true_cells_colour():
    cells = np.zeros((20, 30), int)
    cells[1:9, 1:9] = 4  # 64 px
    cells[11:19, 1:9] = 9
    cells[1:9, 15:29] = 2
    seg = np.zeros_like(cells)
    seg[2:9, 1:9] = 7  # 56 of cell 4's 64 px: a match
    seg[11:14, 1:9] = 5  # 24 of cell 9's 64 px: no match
    seg[14:19, 1:9] = 6  # 40 of 64: a match
    seg[15:19, 20:29] = 8  # only background: no match
    truth = figures.color_instances(cells)
    got = figures.color_matched(seg, cells)
    for segment, cell in ((7, 4), (6, 9)):
        assert (got[seg == segment] == truth[cells == cell][0]).all()
    for segment in (5, 8):
        assert (got[seg == segment] == figures.UNMATCHED).all()
    assert (got[seg == 0] == 0).all()


def test_legend_band_and_plot_with_the_legend_beside_the_curves():
    image = np.zeros((30, 200), np.uint8)
    shown = figures.with_legend(image, [(figures.RED, "cells")], "SEG 0.7")
    assert shown.shape[0] == 30 + 2 * 20 + 6 and shown.shape[1] == 200
    assert (shown[30:] == figures.RED).all(-1).sum() >= 100  # the swatch
    # a curve through the upper right corner, where a legend used to be
    plot = figures.line_plot(
        {"loss": ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), "val": ([1, 5], [5, 5])},
        xlabel="epoch",
        log_y=True,
    )
    x1 = plot.shape[1] - 150  # right edge of the plot area
    curve = (plot == figures._COLORS[0]).all(-1)
    beside = np.argwhere(curve[:, x1 + 1 :])
    assert len(beside) and (beside[:, 1] <= 32).all()  # only the swatch
