"""The paper's data augmentation: random draws on the host, warp in keras.ops.

Elastic deformation as in Ronneberger et al. (2015): displacements on a
coarse 3x3 grid, drawn from a Gaussian with 10 px standard deviation,
interpolated bicubically to every pixel. It is composed with rotation, flips,
zoom and the tile position into **one** coordinate map, so image, labels and
weights are sampled once, at the same positions: the image bilinearly
(bicubic or nearest as options), labels and weights by nearest neighbour
(round half up); outside the image positions are mirrored (``reflect``, as
``numpy.pad``), however far. Gray values are varied afterwards.

One implementation serves every backend, in two parts:

1. **Host, numpy** (`random_params`): sample ``index`` draws every random
   number from ``sample_rng(seed, index)``, so it depends on ``(seed,
   index)`` only, whatever the backend, batch size or worker count.
   `WarpSpec` bounds how far a tile reaches, so the pipeline
   (`keras_unet.data`) hands over only a fixed-size source window.
2. **Device, keras.ops** (`warp_batch`): a deterministic, batched warp with
   static shapes; `compile_warp` compiles it with XLA (``tf.function``, also
   in tf.data; ``jax.jit``) or runs it eagerly (torch). Positions are
   mirrored in full-image coordinates: a window samples like the image.

Coordinates are ``(row, column)`` source pixels; the map is a *backward*
map: output pixel ``p`` shows the source at ``q(p)``.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015, Sect. 3.1.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import keras
import numpy as np
from keras import ops

from keras_unet.checks import check_choice, check_int, check_number, check_range
from keras_unet.data.mirror import mirror_index

__all__ = [
    "INTERPOLATIONS",
    "AugmentConfig",
    "WarpSpec",
    "apply_gray",
    "compile_warp",
    "cubic_matrix",
    "elastic_deform",
    "elastic_field",
    "elastic_grid_values",
    "gray_value_augment",
    "interpolate_grid",
    "random_augment",
    "random_params",
    "sample",
    "sample_rng",
    "sample_window",
    "tile_coordinates",
    "warp_batch",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# Control points are clipped at 4 sigma (6e-5 of the draws): bounds the field.
ELASTIC_CLIP = 4.0
# Noise travels as int16 indices into a table of Gaussian quantiles (2 bytes
# a pixel, numpy draws 10x faster than normals, the same on every backend).
NOISE_LEVELS = 65536


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strongly.

    The defaults are the paper's recipe: elastic deformation (3x3 grid,
    10 px standard deviation, bicubic field), rotation by any angle, flips,
    and gray-value variation. The random tile position gives the shifts.

    Attributes:
        elastic: apply the elastic deformation.
        elastic_grid: control points per axis (the paper: 3).
        elastic_sigma: standard deviation of the control-point displacements
            in pixels (the paper: 10); draws are clipped at 4 sigma.
        interpolation: of the image: "bilinear" (default), "bicubic" or
            "nearest". Labels and weights always use nearest.
        rotation: maximum angle in degrees (uniform in ``[-rotation,
            rotation]``); 180 means any angle, 0 disables.
        rot90: rotate by a random multiple of 90 degrees (exact).
        flip: mirror left-right with probability 1/2 (with `rot90`: all 8
            rotations/flips of the square).
        scale: ``(low, high)`` range of a zoom factor (log-uniform), or
            None (the paper does not scale).
        brightness: add an offset uniform in ``[-brightness, brightness]``
            times the tile's gray-value range (max - min); 0 disables.
        contrast: ``(low, high)`` range of a factor applied around the tile
            mean, or None.
        gamma: ``(low, high)`` range of a gamma exponent (log-uniform) on
            the tile rescaled to [0, 1], or None.
        noise: maximum standard deviation of additive Gaussian noise, as a
            fraction of the tile's range (uniform in ``[0, noise]``).

    Examples:
        >>> AugmentConfig.flips_only().rotation
        0.0
    """

    elastic: bool = True
    elastic_grid: int = 3
    elastic_sigma: float = 10.0
    interpolation: str = "bilinear"
    rotation: float = 180.0
    rot90: bool = True
    flip: bool = True
    scale: tuple | None = None
    brightness: float = 0.1
    contrast: tuple | None = (0.8, 1.25)
    gamma: tuple | None = (0.8, 1.25)
    noise: float = 0.03

    def __post_init__(self):
        check_choice(self.interpolation, "interpolation", INTERPOLATIONS)
        hint = "control points per axis; the paper uses 3"
        check_int(self.elastic_grid, "elastic_grid", 2, hint)
        for name in ("elastic_sigma", "rotation", "brightness", "noise"):
            check_number(getattr(self, name), name, 0.0)
        for name in ("scale", "contrast", "gamma"):  # tuples: hashable
            object.__setattr__(
                self, name, check_range(getattr(self, name), name)
            )

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all (tiles are exact copies)."""
        off = dict(elastic=False, rotation=0.0, rot90=False, flip=False)
        return cls(**off, brightness=0.0, contrast=None, gamma=None, noise=0.0)

    @classmethod
    def flips_only(cls) -> AugmentConfig:
        """Only the exact rotations by 90 degrees and flips."""
        return dataclasses.replace(cls.none(), rot90=True, flip=True)

    @property
    def has_gray(self) -> bool:
        """Whether any gray-value variation is switched on."""
        gray = (self.brightness, self.contrast, self.gamma, self.noise)
        return any(bool(v) for v in gray)


# --------------------------------------------------------------------------
# Host side (numpy): random numbers, the elastic field, window bounds.


def sample_rng(seed, index=0) -> np.random.Generator:
    """The random generator of sample `index` of the stream `seed`.

    ``SeedSequence(seed, spawn_key=(0, index))``: every sample has its own
    stream, the same whatever the backend, pipeline or batch size.

    Examples:
        >>> a = sample_rng(7, 3).random()
        >>> a == sample_rng(7, 3).random() != sample_rng(7, 4).random()
        True
    """
    seed, index = check_int(seed, "seed", 0), check_int(index, "index", 0)
    sequence = np.random.SeedSequence(seed, spawn_key=(0, index))
    return np.random.default_rng(sequence)


def _keys_weights(t):
    """Keys' cubic weights (a = -0.5) of taps -1..2: numpy or tensors."""
    a = -0.5

    def near(x):  # |x| <= 1
        return (a + 2) * x**3 - (a + 3) * x**2 + 1

    def far(x):  # 1 < |x| < 2
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

    return far(1 + t), near(t), near(1 - t), far(2 - t)


@functools.lru_cache(maxsize=64)
def cubic_matrix(n: int, grid: int) -> np.ndarray:
    """(n, grid) float32 matrix interpolating `grid` control values to n px.

    Control point k sits at pixel ``k * (n - 1) / (grid - 1)`` (the first
    and last on the first and last pixel). Taps beyond the grid use Keys'
    boundary condition ``g[-1] = 3 g[0] - 3 g[1] + g[2]`` (linear for a
    2-point grid), so quadratic ramps are reproduced exactly. Cached and
    read-only.

    Examples:
        >>> cubic_matrix(5, 3)[2].tolist()  # pixel 2 is control point 1
        [0.0, 1.0, 0.0]
    """
    u = np.arange(n) * (grid - 1) / max(n - 1, 1)
    base = np.floor(u).astype(np.int64)
    t = u - base
    ghost = (
        ((0, 3.0), (1, -3.0), (2, 1.0)) if grid >= 3 else ((0, 2.0), (1, -1.0))
    )
    matrix = np.zeros((n, grid))
    rows = np.arange(n)
    for tap, weight in zip((-1, 0, 1, 2), _keys_weights(t)):
        index = base + tap
        inside = (index >= 0) & (index < grid)
        matrix[rows[inside], index[inside]] += weight[inside]
        # one ghost point on each side; further taps have weight 0
        for side, first in ((-1, True), (grid, False)):
            here = index == side
            for k, c in ghost:
                matrix[here, k if first else grid - 1 - k] += c * weight[here]
    matrix = matrix.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def _gain(n: int, grid: int) -> float:
    """Largest absolute row sum of `cubic_matrix`: how far it amplifies."""
    return float(np.abs(cubic_matrix(n, grid)).sum(axis=1).max())


def interpolate_grid(values, shape) -> np.ndarray:
    """Bicubic interpolation of control-point displacements to every pixel.

    Control point ``(k, l)`` of a ``(g, g, 2)`` grid sits at pixel
    ``(k (H-1)/(g-1), l (W-1)/(g-1))`` (corners on corners); cubic
    convolution (Keys, a = -0.5, `cubic_matrix`) interpolates, so the field
    equals `values` at the control points. `warp_batch` does the same on
    the device. Returns float32 numpy ``(H, W, 2)`` (row, column).

    Examples:
        >>> g = np.zeros((3, 3, 2), np.float32); g[1, 1] = (5.0, -2.0)
        >>> interpolate_grid(g, (9, 9))[4, 4].tolist()
        [5.0, -2.0]
    """
    values = np.asarray(values, np.float32)
    my = cubic_matrix(int(shape[0]), values.shape[0])
    mx = cubic_matrix(int(shape[1]), values.shape[1])
    return np.stack(
        [my @ values[..., 0] @ mx.T, my @ values[..., 1] @ mx.T], axis=-1
    )


def elastic_grid_values(seed, grid=3, sigma=10.0) -> np.ndarray:
    """Random control-point displacements, float32 ``(grid, grid, 2)``.

    N(0, sigma^2) per axis, clipped at 4 sigma. `seed` is an int (drawn
    from ``sample_rng(seed)``) or a `numpy.random.Generator`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else sample_rng(seed)
    normal = rng.standard_normal((grid, grid, 2))
    clipped = np.clip(normal, -ELASTIC_CLIP, ELASTIC_CLIP)
    return (sigma * clipped).astype(np.float32)


def elastic_field(seed, shape, grid=3, sigma=10.0) -> np.ndarray:
    """The paper's elastic displacement field, as a numpy array.

    Displacements on a ``grid x grid`` lattice of control points spanning
    the image are drawn from N(0, sigma^2) per axis (`elastic_grid_values`)
    and interpolated bicubically (`interpolate_grid`). `elastic_deform`
    with the same seed warps by exactly this field.

    Args:
        seed: int seed (or a `numpy.random.Generator`).
        shape: ``(height, width)`` of the field.
        grid: control points per axis (the paper: 3).
        sigma: their standard deviation in pixels (the paper: 10).

    Returns:
        float32 numpy array ``(height, width, 2)`` of (row, column)
        displacements.

    Examples:
        >>> elastic_field(0, (572, 572)).shape
        (572, 572, 2)
    """
    return interpolate_grid(elastic_grid_values(seed, grid, sigma), shape)


def _random_matrix(rng, config) -> np.ndarray:
    """Rotation, rot90, flip and zoom (float32 2x2); always 4 draws."""
    angle, k, flip, zoom = rng.random(4)
    a = np.eye(2)
    if config.rotation:
        theta = math.radians(config.rotation * (2.0 * angle - 1.0))
        c, s = math.cos(theta), math.sin(theta)
        a = np.array([[c, -s], [s, c]]) @ a
    if config.rot90:  # exact: the entries are 0 and +-1
        c, s = ((1, 0), (0, 1), (-1, 0), (0, -1))[int(k * 4)]
        a = np.array([[c, -s], [s, c]], np.float64) @ a
    if config.flip and flip < 0.5:
        a = a @ np.diag([1.0, -1.0])
    if config.scale:
        lo, hi = (math.log(v) for v in config.scale)
        a = a / math.exp(lo + (hi - lo) * zoom)  # zoom in: a smaller region
    return a.astype(np.float32)


def _random_gray(rng, config, shape) -> dict:
    """``gray`` (gamma, contrast, brightness, noise std), ``noise``."""
    u = rng.random(4)
    gray = np.array([1.0, 1.0, 0.0, 0.0])
    if config.gamma:
        lo, hi = (math.log(v) for v in config.gamma)
        gray[0] = math.exp(lo + (hi - lo) * u[0])
    if config.contrast:
        gray[1] = np.interp(u[1], (0.0, 1.0), config.contrast)
    gray[2] = config.brightness * (2.0 * u[2] - 1.0)
    gray[3] = config.noise * u[3]
    params = {"gray": gray.astype(np.float32)}
    if config.noise:
        params["noise"] = rng.integers(
            -NOISE_LEVELS // 2, NOISE_LEVELS // 2, shape, dtype=np.int16
        )
    return params


@functools.lru_cache(maxsize=1)
def _noise_table() -> np.ndarray:
    """Standard normal quantiles at ``(k + 0.5) / 65536``, float32."""
    from scipy.special import ndtri

    levels = (np.arange(NOISE_LEVELS) + 0.5) / NOISE_LEVELS
    return ndtri(levels).astype(np.float32)


def _extent(a, b, config) -> float:
    """Largest ``|A[0, 0]| a + |A[0, 1]| b`` over the allowed matrices A."""

    def best(a, b):  # max of a|cos t| + b|sin t| for |t| <= rotation
        limit = math.radians(min(config.rotation, 90.0))
        if math.atan2(b, a) <= limit:
            return math.hypot(a, b)
        return a * math.cos(limit) + b * math.sin(limit)

    ext = max(best(a, b), best(b, a)) if config.rot90 else best(a, b)
    return ext / (config.scale[0] if config.scale else 1.0)


@dataclasses.dataclass(frozen=True)
class WarpSpec:
    """Everything static about one warp: config, tile and window shapes.

    Build it with `WarpSpec.create`. The windows are the fixed sizes of the
    source crops (image; labels and weights) that the pipeline cuts for
    `warp_batch` (`keras_unet.data.stream.cut_windows`): they hold every pixel a
    tile of this configuration can reach, through the mirror too.

    Attributes:
        config: the `AugmentConfig`.
        input_shape, output_shape: ``(h, w)`` of the input tile and of the
            output (label) tile centred in it.
        image_window, label_window: ``(h, w)`` of the source crops.
        mask_mirrored: weight 0 where the label comes from outside the image.
        field_gain: bound of the field per unit control-point displacement.
    """

    config: AugmentConfig
    input_shape: tuple
    output_shape: tuple
    image_window: tuple
    label_window: tuple
    mask_mirrored: bool = False
    field_gain: float = 1.0

    @classmethod
    def create(
        cls,
        config,
        input_shape,
        output_shape,
        *,
        mask_mirrored=False,
        max_image_shape=None,
    ) -> WarpSpec:
        """The spec for tiles of `input_shape` around `output_shape`.

        Args:
            config: `AugmentConfig` or None (no augmentation).
            input_shape: ``(h, w)`` of the input tile.
            output_shape: ``(h, w)`` of the output tile.
            mask_mirrored: see the attribute.
            max_image_shape: optional ``(H, W)`` no image exceeds; windows
                are never larger (less to copy and move).

        Example:

        >>> spec = WarpSpec.create(AugmentConfig(), (572, 572), (388, 388))
        >>> spec.image_window, spec.label_window
        ((939, 939), (679, 679))
        """
        config = config or AugmentConfig.none()
        in_hw = tuple(int(n) for n in input_shape)
        out_hw = tuple(int(n) for n in output_shape)
        grid = config.elastic_grid
        gain = _gain(in_hw[0], grid) * _gain(in_hw[1], grid)
        reach = ELASTIC_CLIP * config.elastic_sigma * gain
        reach = reach if config.elastic else 0.0
        windows = []
        for h, w in (in_hw, out_hw):
            sizes = [
                math.ceil(_extent(h - 1, w - 1, config) + 2 * reach + 0.02) + 6,
                math.ceil(_extent(w - 1, h - 1, config) + 2 * reach + 0.02) + 6,
            ]
            if max_image_shape is not None:
                sizes = [min(s, int(m)) for s, m in zip(sizes, max_image_shape)]
            windows.append(tuple(sizes))
        return cls(config, in_hw, out_hw, *windows, bool(mask_mirrored), gain)

    @property
    def margin(self) -> tuple:
        """Offset ``(rows, cols)`` of the output tile in the input tile."""
        return tuple(
            (i - o) // 2 for i, o in zip(self.input_shape, self.output_shape)
        )


def random_params(rng, spec, image_shape) -> dict:
    """Draw the random parameters of one tile (numpy, nothing else).

    Always in the same order, whatever the config (tile position, rotation,
    rot90, flip, zoom, control points, gray values, noise), so the tile
    position of a sample does not depend on the augmentation.

    Args:
        rng: `numpy.random.Generator`, e.g. ``sample_rng(seed, index)``.
        spec: `WarpSpec`.
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the source image.

    Returns:
        A dict of numpy arrays: ``origin`` int32 (2,), the output tile's
        top-left corner in the image (uniform such that the tile lies in
        the image, or the image in the tile); ``matrix`` float32 (2, 2) of
        the backward map; ``grid`` float32 (g, g, 2) control-point
        displacements; ``gray`` float32 (4,) and, with noise on, ``noise``
        int16 (in_h, in_w, C) Gaussian quantile indices.
    """
    config = spec.config
    origin = []
    for size, out in zip(image_shape[:2], spec.output_shape):
        lo, hi = min(0, size - out), max(0, size - out)
        origin.append(rng.integers(lo, hi + 1))
    matrix = _random_matrix(rng, config)
    grid = elastic_grid_values(rng, config.elastic_grid, config.elastic_sigma)
    if not config.elastic:
        grid = np.zeros_like(grid)
    channels = image_shape[2] if len(image_shape) > 2 else 1
    params = {
        "origin": np.asarray(origin, np.int32),
        "matrix": matrix,
        "grid": grid,
    }
    params.update(_random_gray(rng, config, (*spec.input_shape, channels)))
    return params


# --------------------------------------------------------------------------
# Device side (keras.ops only): the deterministic, batched warp.


def _mirror(index, n, pair=False):
    """Mirror ints into [0, n) (edge not repeated); `pair`: and index + 1."""
    first = mirror_index(index, n, xp=ops)
    if not pair:
        return [first]
    period = ops.maximum(2 * (n - 1), 1)
    ahead = ops.where(index % period < n - 1, first + 1, first - 1)  # turn
    return [first, ops.clip(ahead, 0, n - 1)]


def _per_sample(values, column, ndim):
    """``values[:, column]`` shaped (B, 1, ..., 1) to broadcast over ndim."""
    return ops.reshape(values[:, column], (-1,) + (1,) * (ndim - 1))


def _gather(window, rows, cols):
    """(B, h, w, C) pixels of (B, Wh, Ww, C) windows at window indices."""
    b, wh, ww, c = ops.shape(window)
    first = ops.reshape(ops.arange(b, dtype="int32") * (wh * ww), (-1, 1, 1))
    flat = ops.reshape(window, (b * wh * ww, c))
    return ops.take(flat, first + rows * ww + cols, axis=0)


def sample_window(window, offset, size, origin, qy, qx, interpolation):
    """Sample windows at float positions, mirroring at the image borders.

    Args:
        window: (B, Wh, Ww, C) source windows, any dtype.
        offset: int32 (B, 2): the windows' top-left corners in the image.
        size: int32 (B, 2): the full image sizes ``(H, W)``.
        origin: int32 (B, 2) added to the positions (keeps them small).
        qy: float32 (B, h, w) row positions.
        qx: float32 (B, h, w) column positions.
        interpolation: "nearest" (keeps the dtype; rounds half up),
            "bilinear" or "bicubic" (float32).

    Returns:
        (B, h, w, C).
    """

    def taps(q, axis, steps):  # window indices of floor(q) + steps
        base = _per_sample(origin, axis, 3) + ops.cast(ops.floor(q), "int32")
        n = _per_sample(size, axis, 3)
        if steps == (0, 1):
            mirrored = _mirror(base, n, pair=True)
        else:
            mirrored = [_mirror(base + k, n)[0] for k in steps]
        low, limit = _per_sample(offset, axis, 3), window.shape[1 + axis]
        # the clip is a no-op when the window is right: a safety net
        return [ops.clip(t - low, 0, limit - 1) for t in mirrored]

    if interpolation == "nearest":
        rows, cols = taps(qy + 0.5, 0, (0,)), taps(qx + 0.5, 1, (0,))
        return _gather(window, rows[0], cols[0])
    ty, tx = (qy - ops.floor(qy))[..., None], (qx - ops.floor(qx))[..., None]
    steps = (0, 1) if interpolation == "bilinear" else (-1, 0, 1, 2)
    rows, cols = taps(qy, 0, steps), taps(qx, 1, steps)

    def tap(row, col):
        return ops.cast(_gather(window, row, col), "float32")

    if interpolation == "bilinear":
        upper, lower = ((tap(r, cols[0]), tap(r, cols[1])) for r in rows)
        top, bottom = (a + (b - a) * tx for a, b in (upper, lower))
        return top + (bottom - top) * ty
    out = 0.0
    for row, wy in zip(rows, _keys_weights(ty)):
        acc = 0.0
        for col, wx in zip(cols, _keys_weights(tx)):
            acc += wx * tap(row, col)
        out += wy * acc
    return out


def tile_coordinates(matrix, grid, input_shape, output_shape):
    """Source positions of every input-tile pixel, relative to the origin.

    Input-tile pixel ``p`` shows the source at ``origin + q(p)`` with
    ``q(p) = (out - 1) / 2 + A (p - c) + d(p)``: ``c`` is the tile centre,
    ``A = matrix`` and ``d`` the field interpolated from `grid` over the
    input tile (`cubic_matrix`). Without augmentation ``q(p) = p - margin``.

    Args:
        matrix: float32 (B, 2, 2).
        grid: float32 (B, g, g, 2).
        input_shape: static ``(h, w)`` of the input tile.
        output_shape: static ``(h, w)`` of the output tile.

    Returns:
        Two float32 tensors (B, in_h, in_w): rows and columns.
    """
    (in_h, in_w), (out_h, out_w) = input_shape, output_shape
    rows = np.arange(in_h, dtype=np.float32) - (in_h - 1) / 2
    cols = np.arange(in_w, dtype=np.float32) - (in_w - 1) / 2
    rows = ops.convert_to_tensor(rows.reshape(1, in_h, 1))
    cols = ops.convert_to_tensor(cols.reshape(1, 1, in_w))
    g = grid.shape[1]
    my = ops.convert_to_tensor(np.array(cubic_matrix(in_h, g)))
    mxt = ops.convert_to_tensor(np.array(cubic_matrix(in_w, g).T))
    coords = []
    for i, half in ((0, (out_h - 1) / 2), (1, (out_w - 1) / 2)):
        a0 = ops.reshape(matrix[:, i, 0], (-1, 1, 1))
        a1 = ops.reshape(matrix[:, i, 1], (-1, 1, 1))
        field = ops.matmul(ops.matmul(my, grid[..., i]), mxt)
        coords.append((half + (a0 * rows + a1 * cols)) + field)
    return coords[0], coords[1]


def apply_gray(x, gray, noise=None, config=None):
    """Apply gray-value parameters to image tiles (no random ops).

    In this order: gamma on the tile rescaled to [0, 1] (and back), contrast
    around the tile mean, brightness offset, additive Gaussian noise.
    Brightness and noise are fractions of the tile's gray-value range
    (max - min), so they act alike on 8-bit, 12-bit and float images.

    Args:
        x: float32 (B, h, w, C) tiles.
        gray: float32 (B, 4): gamma, contrast, brightness, noise std.
        noise: int16 (B, h, w, C) Gaussian quantile indices, or None.
        config: `AugmentConfig`; steps it switches off are skipped (so they
            are exact no-ops). Default: all four steps.

    Returns:
        float32 (B, h, w, C).
    """
    x = ops.cast(x, "float32")
    config = config or AugmentConfig(noise=0.03 if noise is not None else 0)
    if not config.has_gray:
        return x
    axes = (1, 2, 3)
    vmin = ops.min(x, axis=axes, keepdims=True)
    span = ops.maximum(ops.max(x, axis=axes, keepdims=True) - vmin, 1e-6)
    gray = ops.reshape(ops.cast(gray, "float32"), (-1, 1, 1, 1, 4))
    if config.gamma:
        # exp(g log v): vectorizes where pow does not (log 0 = -inf is fine)
        x = vmin + span * ops.exp(gray[..., 0] * ops.log((x - vmin) / span))
    if config.contrast:
        mean = ops.mean(x, axis=axes, keepdims=True)
        x = mean + (x - mean) * gray[..., 1]
    if config.brightness:
        x = x + gray[..., 2] * span
    if config.noise and noise is not None:
        table = ops.convert_to_tensor(_noise_table())
        index = ops.cast(noise, "int32") + NOISE_LEVELS // 2
        x = x + (gray[..., 3] * span) * ops.take(table, index)
    return x


def warp_batch(batch, spec):
    """Warp a batch of source windows into training tiles (keras.ops only).

    The heavy, deterministic part of the augmentation: no random ops, static
    shapes, so it compiles with XLA (see `compile_warp`).

    Args:
        batch: dict of arrays with a leading batch axis: the `random_params`
            plus the windows (``image``, ``labels``, optional ``weights``),
            their offsets and the image ``size``; see
            `keras_unet.data.stream.cut_windows`. Numpy or backend tensors.
        spec: the `WarpSpec` the windows were cut for.

    Returns:
        ``(x, y, w)``: float32 (B, in_h, in_w, C), int32 (B, out_h, out_w),
        float32 (B, out_h, out_w).
    """
    (my, mx), (out_h, out_w) = spec.margin, spec.output_shape
    b = {k: ops.convert_to_tensor(v) for k, v in batch.items()}
    qy, qx = tile_coordinates(
        ops.cast(b["matrix"], "float32"),
        ops.cast(b["grid"], "float32"),
        spec.input_shape,
        spec.output_shape,
    )
    at = (b["size"], b["origin"], qy, qx, spec.config.interpolation)
    x = sample_window(b["image"], b["image_offset"], *at)
    x = apply_gray(x, b["gray"], b.get("noise"), spec.config)
    qy = qy[:, my : my + out_h, mx : mx + out_w]
    qx = qx[:, my : my + out_h, mx : mx + out_w]
    where = (b["label_offset"], b["size"], b["origin"], qy, qx, "nearest")
    y = sample_window(b["labels"][..., None], *where)[..., 0]
    if "weights" in b:
        w = sample_window(b["weights"][..., None], *where)[..., 0]
    else:
        w = ops.ones_like(qy)
    for axis, q in enumerate((qy, qx) if spec.mask_mirrored else ()):
        near = ops.cast(ops.floor(q + 0.5), "int32")
        near = near + _per_sample(b["origin"], axis, 3)
        inside = (near >= 0) & (near < _per_sample(b["size"], axis, 3))
        w = w * ops.cast(inside, w.dtype)
    return x, ops.cast(y, "int32"), ops.cast(w, "float32")


def compile_warp(spec, jit_compile="auto"):
    """`warp_batch` for `spec`, compiled for the current Keras backend.

    TensorFlow: ``tf.function(jit_compile=...)`` (also inside tf.data);
    JAX: ``jax.jit``; torch: eager. Arrays go to the default device (the
    GPU if there is one). XLA compiles once per spec and batch size.

    Args:
        spec: `WarpSpec`.
        jit_compile: True, False or "auto" (XLA on TensorFlow and JAX).

    Returns:
        A function ``batch -> (x, y, w)`` of backend tensors.
    """
    if jit_compile not in (True, False, "auto"):
        raise ValueError(
            "`jit_compile` must be True, False or 'auto'. "
            f"Received: jit_compile={jit_compile!r}"
        )
    backend = keras.backend.backend()
    jit = jit_compile is True or (
        jit_compile == "auto" and backend in ("tensorflow", "jax")
    )
    return _compiled_warp(spec, jit, backend)


@functools.lru_cache(maxsize=16)  # one per spec: datasets share XLA's cache
def _compiled_warp(spec, jit, backend):
    def warp(batch):
        return warp_batch(batch, spec)

    if backend == "tensorflow":
        import tensorflow as tf

        warp = tf.function(warp, jit_compile=jit)
    elif backend == "jax" and jit:
        import jax

        warp = jax.jit(warp)

    def run(batch):
        return warp({k: ops.convert_to_tensor(v) for k, v in batch.items()})

    return run


# --------------------------------------------------------------------------
# Whole images: eager, for inspection and figures.


def _warp_whole(image, labels, weights, params, config):
    """Warp a whole image (origin 0, same size out); returns a list."""
    image = ops.convert_to_tensor(image)
    hw = tuple(int(n) for n in image.shape[:2])
    for other in (labels, weights):
        if other is not None and tuple(other.shape[:2]) != hw:
            raise ValueError(
                "image, labels and weights must have the same height and "
                f"width. Received: image {hw}, other {tuple(other.shape[:2])}"
            )
    p = {
        k: ops.convert_to_tensor(np.asarray(v)[None]) for k, v in params.items()
    }
    qy, qx = tile_coordinates(p["matrix"], p["grid"], hw, hw)
    zero = np.zeros((1, 2), np.int32)
    where = (zero, np.array([hw], np.int32), zero, qy, qx)
    rank2 = len(image.shape) == 2
    out = sample_window(
        (image[..., None] if rank2 else image)[None],
        *where,
        config.interpolation,
    )
    if config.has_gray:
        out = apply_gray(out, p["gray"], p.get("noise"), config)
    results = [out[0, ..., 0] if rank2 else out[0]]
    for other in (labels, weights):
        if other is not None:
            window = ops.convert_to_tensor(other)[None, ..., None]
            results.append(sample_window(window, *where, "nearest")[0, ..., 0])
    return results


def random_augment(image, labels=None, weights=None, seed=0, config=None):
    """Apply the configured augmentation to a whole image (same size out).

    Geometric transforms (elastic, rotation, flips, scale) act on image,
    labels and weights identically (one coordinate map, nearest neighbour
    for labels and weights; rotations turn about the image centre);
    gray-value changes act on the image only. Integer images are not
    rescaled: convert with `keras_unet.data.normalize.to_float_image` first if
        the
    gray-value parameters are meant for [0, 1].

    Args:
        image: (H, W) or (H, W, C) numpy array or tensor.
        labels: optional (H, W) label image.
        weights: optional (H, W) weight map.
        seed: int seed (parameters from ``sample_rng(seed)``).
        config: `AugmentConfig` (default: the paper's recipe).

    Returns:
        Backend tensors (``keras.ops.convert_to_numpy`` makes them numpy):
        the image, or a tuple ``(image, labels[, weights])``.

    Examples:
        >>> img = np.random.default_rng(0).random((64, 64)).astype("float32")
        >>> tuple(random_augment(img, seed=1).shape)
        (64, 64)
    """
    config = config or AugmentConfig()
    shape = tuple(int(n) for n in ops.shape(image))
    spec = WarpSpec.create(config, shape[:2], shape[:2])
    params = random_params(sample_rng(seed), spec, shape)
    results = _warp_whole(image, labels, weights, params, config)
    return results[0] if len(results) == 1 else tuple(results)


def gray_value_augment(image, seed, config=None):
    """Random brightness, contrast, gamma and noise on a float image tile.

    Args:
        image: float32 (H, W) or (H, W, C), values nominally in [0, 1].
        seed: int seed (parameters from ``sample_rng(seed)``).
        config: `AugmentConfig` (its gray-value fields are used).

    Returns:
        float32 backend tensor of the image's shape.

    Examples:
        >>> x = np.random.default_rng(0).random((32, 32, 1)).astype("float32")
        >>> tuple(gray_value_augment(x, seed=3).shape)
        (32, 32, 1)
    """
    config = config or AugmentConfig()
    image = ops.cast(ops.convert_to_tensor(image), "float32")
    shape = tuple(int(n) for n in image.shape)
    full = (1, *shape) if len(shape) == 3 else (1, *shape, 1)
    p = _random_gray(sample_rng(seed), config, full)
    x = ops.reshape(image, full)
    x = apply_gray(x, p["gray"][None], p.get("noise"), config)
    return ops.reshape(x, shape)


def sample(image, coords, interpolation="bilinear"):
    """Sample `image` at float source coordinates, mirroring at the borders.

    Args:
        image: (H, W) or (H, W, C) numpy array or tensor, any numeric dtype.
        coords: (..., 2) float (row, column) positions, or a ``(rows,
            columns)`` pair of equally shaped arrays.
        interpolation: "nearest" (keeps dtype and values; rounds half up),
            "bilinear" or "bicubic" (float32 result).

    Returns:
        Backend tensor of the coordinates' shape (+ ``(C,)`` for 3-D images).

    Examples:
        >>> img = np.arange(12, dtype="float32").reshape(3, 4)
        >>> keras.ops.convert_to_numpy(sample(img, ([0.5, -1.0], [1.0, 0.0])))
        array([3., 4.], dtype=float32)
    """
    check_choice(interpolation, "interpolation", INTERPOLATIONS)
    image = ops.convert_to_tensor(image)
    rank2 = len(image.shape) == 2
    window = image[None, ..., None] if rank2 else image[None]
    if isinstance(coords, tuple | list):
        qy, qx = (ops.convert_to_tensor(q) for q in coords)
    else:
        coords = ops.convert_to_tensor(coords)
        qy, qx = coords[..., 0], coords[..., 1]
    shape = tuple(qy.shape)
    qy = ops.reshape(ops.cast(qy, "float32"), (1, -1, 1))
    qx = ops.reshape(ops.cast(qx, "float32"), (1, -1, 1))
    zero = np.zeros((1, 2), np.int32)
    size = np.array([window.shape[1:3]], np.int32)
    out = sample_window(window, zero, size, zero, qy, qx, interpolation)
    out = ops.reshape(out, (*shape, window.shape[-1]))
    return out[..., 0] if rank2 else out


def elastic_deform(
    image,
    labels=None,
    weights=None,
    seed=0,
    grid=3,
    sigma=10.0,
    interpolation="bilinear",
):
    """The paper's elastic deformation of a whole image (same size out).

    Image, labels and weights are warped by the same random field
    (`elastic_field` with the same seed); labels and weights by nearest
    neighbour. The image keeps its dtype for "nearest", else becomes float32
    (in the input's value range).

    Args:
        image: (H, W) or (H, W, C) numpy array or tensor.
        labels: optional (H, W) label image.
        weights: optional (H, W) weight map.
        seed: int seed.
        grid: control points per axis (the paper: 3).
        sigma: their standard deviation in px (the paper: 10).
        interpolation: for the image: "bilinear", "bicubic" or "nearest".

    Returns:
        Backend tensors: the image, or a tuple ``(image, labels[, weights])``.

    Examples:
        >>> img = np.random.default_rng(0).random((128, 128)).astype("float32")
        >>> tuple(elastic_deform(img, seed=1).shape)
        (128, 128)
    """
    config = dataclasses.replace(  # checks grid, sigma and interpolation
        AugmentConfig.none(), elastic_grid=grid, elastic_sigma=sigma
    )
    config = dataclasses.replace(config, interpolation=interpolation)
    params = {
        "matrix": np.eye(2, dtype=np.float32),
        "grid": elastic_grid_values(seed, grid, sigma),
    }
    results = _warp_whole(image, labels, weights, params, config)
    return results[0] if len(results) == 1 else tuple(results)
