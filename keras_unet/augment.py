"""The paper's data augmentation as TensorFlow ops, for tf.data and the GPU.

Elastic deformation as in Ronneberger et al. (2015): random displacement
vectors on a coarse 3x3 grid, drawn from a Gaussian with 10 px standard
deviation, interpolated bicubically to a displacement for every pixel. Here it
is composed with rotation (any angle and multiples of 90 degrees), flips,
optional scaling and the random tile position into **one** coordinate map, so
that every tile is interpolated once, and image, labels and weights are
sampled at exactly the same source positions:

- the image bilinearly (bicubic or nearest as options),
- labels and weight maps by nearest neighbour (label values are never
  mixed; a weight always belongs to the label it is sampled with),
- positions outside the image are mirrored (``reflect``: the edge pixel is
  not repeated, like ``numpy.pad(mode="reflect")``), however far outside.

Gray-value variation (brightness, contrast, gamma, noise) is applied to the
image afterwards. Everything uses stateless random ops: the same seed gives
the same sample, on CPU, GPU and under XLA (``jit_compile=True``).

Coordinates are ``(row, column)`` in pixels of the source image; the field is
a *backward* map: output pixel ``p`` shows the source at ``p + d(p)``.

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015, Sect. 3.1.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import tensorflow as tf

__all__ = [
    "AugmentConfig",
    "augment_tile",
    "elastic_deform",
    "elastic_field",
    "elastic_grid_values",
    "apply_gray",
    "gray_value_augment",
    "interpolate_grid",
    "random_augment",
    "random_gray",
    "random_transform",
    "sample",
    "transform_coordinates",
    "warp_tile",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations run, and how strongly.

    The defaults are the paper's recipe: elastic deformation (3x3 grid,
    10 px standard deviation, bicubic field), rotation by any angle, flips,
    and gray-value variation. The random position of the training tile in
    the (mirror-extended) image provides the shifts.

    Attributes:
        elastic: apply the elastic deformation.
        elastic_grid: control points per axis (the paper: 3).
        elastic_sigma: standard deviation of the control-point displacements
            in pixels (the paper: 10).
        interpolation: how the image is sampled: "bilinear" (default),
            "bicubic" or "nearest". Labels and weights always use nearest.
        rotation: maximum rotation angle in degrees; the angle is uniform in
            ``[-rotation, rotation]``. 180 means any angle, 0 disables.
        rot90: rotate by a random multiple of 90 degrees (exact, no
            interpolation).
        flip: mirror left-right with probability 1/2 (with `rot90` this
            gives all 8 rotations/flips of the square).
        scale: ``(low, high)`` range of a random zoom factor (log-uniform),
            or None (the paper does not scale).
        brightness: an offset uniform in ``[-brightness, brightness]``
            times the tile's gray-value range (max - min) is added. 0
            disables.
        contrast: ``(low, high)`` range of a factor applied around the tile
            mean, or None.
        gamma: ``(low, high)`` range of a gamma exponent (log-uniform),
            applied to the tile rescaled to [0, 1], or None.
        noise: maximum standard deviation of additive Gaussian noise, as a
            fraction of the tile's gray-value range (the standard deviation
            is uniform in ``[0, noise]``). 0 disables.
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
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"`interpolation` must be one of {INTERPOLATIONS}. "
                f"Received: interpolation={self.interpolation!r}"
            )
        if (
            isinstance(self.elastic_grid, bool)
            or not isinstance(self.elastic_grid, numbers.Integral)
            or self.elastic_grid < 2
        ):
            raise ValueError(
                "`elastic_grid` must be an integer >= 2 (control points per "
                f"axis; the paper uses 3). Received: {self.elastic_grid!r}"
            )
        for name in ("elastic_sigma", "rotation", "brightness", "noise"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not value >= 0:
                raise ValueError(
                    f"`{name}` must be a number >= 0. "
                    f"Received: {name}={value!r}"
                )
        for name in ("scale", "contrast", "gamma"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                lo, hi = (float(v) for v in value)
            except (TypeError, ValueError):
                lo = hi = float("nan")
            if not 0 < lo <= hi:
                raise ValueError(
                    f"`{name}` must be None or a (low, high) pair with "
                    f"0 < low <= high. Received: {name}={value!r}"
                )

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all (tiles are exact copies)."""
        return cls(
            elastic=False,
            rotation=0.0,
            rot90=False,
            flip=False,
            scale=None,
            brightness=0.0,
            contrast=None,
            gamma=None,
            noise=0.0,
        )

    @classmethod
    def flips_only(cls) -> AugmentConfig:
        """Only the exact rotations by 90 degrees and flips."""
        return dataclasses.replace(cls.none(), rot90=True, flip=True)


def _as_seed(seed):
    """A stateless seed: shape-[2] int32 tensor (an int becomes [seed, 0])."""
    if isinstance(seed, numbers.Integral):
        seed = [int(seed) & 0x7FFFFFFF, 0]
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(
            f"A seed must be integer. Received: dtype={seed.dtype}"
        )
    return tf.cast(tf.reshape(seed, [2]), tf.int32)


def _split(seed, n):
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def _normal(shape, seed):
    """Standard normal numbers by Box-Muller from two stateless uniforms.

    (``tf.random.stateless_normal`` is very slow under XLA on the CPU.)
    """
    s1, s2 = _split(seed, 2)
    u1 = tf.random.stateless_uniform(shape, s1, minval=2.0**-24, maxval=1.0)
    u2 = tf.random.stateless_uniform(shape, s2)
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos((2.0 * math.pi) * u2)


def _reflect_coordinate(q, n):
    """Mirror float positions into [0, n - 1] (period 2(n - 1)).

    Interpolating at the mirrored position equals interpolating the
    mirrored pixels (the mirror is a piecewise isometry), so one reflection
    per coordinate serves every tap.
    """
    n = tf.cast(n, q.dtype)
    period = tf.maximum(2.0 * (n - 1.0), 1.0)
    q = tf.math.floormod(q, period)
    q = tf.where(q > n - 1.0, period - q, q)
    return tf.minimum(q, n - 1.0)


def _reflect(index, n):
    """Mirror integer indices into [0, n) without repeating the edge pixel."""
    n = tf.cast(n, index.dtype)
    period = tf.maximum(2 * (n - 1), 1)
    index = tf.math.floormod(index, period)
    return tf.where(index >= n, period - index, index)


def _keys_weights(t):
    """Cubic-convolution weights (Keys, a = -0.5) of the taps -1, 0, 1, 2."""
    a = -0.5

    def near(x):  # |x| <= 1
        return (a + 2) * x**3 - (a + 3) * x**2 + 1

    def far(x):  # 1 < |x| < 2
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

    return far(1 + t), near(t), near(1 - t), far(2 - t)


def _cubic_matrix(n, grid):
    """(n, grid) matrix interpolating `grid` control values onto n pixels.

    Control point k sits at pixel ``k * (n - 1) / (grid - 1)``, so the first
    and last control points are on the first and last pixel. The taps beyond
    the grid use Keys' boundary condition ``g[-1] = 3 g[0] - 3 g[1] + g[2]``
    (linear extrapolation for a 2-point grid), so that, like the interior,
    the interpolation reproduces quadratic ramps exactly.
    """
    pos = tf.range(n, dtype=tf.float32)
    u = pos * (grid - 1) / tf.maximum(tf.cast(n, tf.float32) - 1.0, 1.0)
    base = tf.floor(u)
    t = u - base
    base = tf.cast(base, tf.int32)
    if grid >= 3:
        ghost = ((0, 3.0), (1, -3.0), (2, 1.0))
    else:
        ghost = ((0, 2.0), (1, -1.0))
    matrix = tf.zeros([n, grid], tf.float32)
    for tap, weight in zip((-1, 0, 1, 2), _keys_weights(t)):
        index = base + tap
        inside = tf.cast((index >= 0) & (index < grid), tf.float32)
        matrix += (weight * inside)[:, None] * tf.one_hot(
            tf.clip_by_value(index, 0, grid - 1), grid, dtype=tf.float32
        )
        # one ghost point on each side; further taps have weight 0
        for side, sign in ((-1, 1), (grid, -1)):
            here = tf.cast(tf.equal(index, side), tf.float32) * weight
            for k, c in ghost:
                col = k if sign == 1 else grid - 1 - k
                matrix += (c * here)[:, None] * tf.one_hot(
                    tf.fill([n], col), grid, dtype=tf.float32
                )
    return matrix


def elastic_grid_values(seed, grid=3, sigma=10.0):
    """The random control-point displacements, shape (grid, grid, 2)."""
    return sigma * _normal([grid, grid, 2], _as_seed(seed))


def interpolate_grid(values, shape):
    """Bicubic interpolation of control-point displacements to every pixel.

    Control point ``(k, l)`` of a ``(g, g, 2)`` grid sits at pixel
    ``(k (H-1)/(g-1), l (W-1)/(g-1))``: the corner points are on the corner
    pixels. Cubic convolution (Keys, a = -0.5) interpolates, so at the
    control points the field equals `values` exactly.

    Returns:
        float32 ``(H, W, 2)`` (row, column) displacements.
    """
    values = tf.cast(values, tf.float32)
    grid = values.shape[0]
    my = _cubic_matrix(shape[0], grid)
    mx = _cubic_matrix(shape[1], values.shape[1])
    dy = my @ values[..., 0] @ tf.transpose(mx)
    dx = my @ values[..., 1] @ tf.transpose(mx)
    return tf.stack([dy, dx], axis=-1)


def elastic_field(seed, shape, grid=3, sigma=10.0):
    """The paper's elastic displacement field.

    Displacements on a ``grid x grid`` lattice of control points spanning the
    image (corners included) are drawn from N(0, sigma^2) per axis and
    interpolated bicubically to every pixel (`interpolate_grid`).

    Args:
        seed: stateless seed (int or shape-[2] int tensor).
        shape: ``(height, width)`` of the field.
        grid: control points per axis (the paper: 3).
        sigma: standard deviation in pixels (the paper: 10).

    Returns:
        float32 tensor ``(height, width, 2)``: (row, column) displacements.

    Examples:
        >>> field = elastic_field(0, (572, 572))
        >>> field.shape
        TensorShape([572, 572, 2])
    """
    return interpolate_grid(elastic_grid_values(seed, grid, sigma), shape)


def _random_matrix(seed, config):
    """Random 2x2 matrix (rotation, rot90, flip, scale) of the backward map."""
    s_angle, s_k, s_flip, s_scale = _split(seed, 4)
    a = tf.eye(2, dtype=tf.float32)
    if config.rotation:
        theta = tf.random.stateless_uniform(
            [], s_angle, -config.rotation, config.rotation
        ) * (math.pi / 180.0)
        c, s = tf.cos(theta), tf.sin(theta)
        a = tf.stack([tf.stack([c, -s]), tf.stack([s, c])]) @ a
    if config.rot90:
        # exact multiples of 90 degrees: the entries are exactly 0 and +-1
        k = tf.random.stateless_uniform([], s_k, 0, 4, dtype=tf.int32)
        cos_k = tf.gather(tf.constant([1.0, 0.0, -1.0, 0.0]), k)
        sin_k = tf.gather(tf.constant([0.0, 1.0, 0.0, -1.0]), k)
        r = tf.stack([tf.stack([cos_k, -sin_k]), tf.stack([sin_k, cos_k])])
        a = r @ a
    if config.flip:
        f = tf.where(tf.random.stateless_uniform([], s_flip) < 0.5, -1.0, 1.0)
        a = a @ tf.stack([tf.stack([1.0, 0.0]), tf.stack([0.0, f])])
    if config.scale:
        lo, hi = (math.log(v) for v in config.scale)
        z = tf.exp(tf.random.stateless_uniform([], s_scale, lo, hi))
        a = a / z  # zoom in by z: sample a smaller source region
    return a


def random_transform(seed, config, image_shape, input_shape, output_shape):
    """Draw the random parameters of one training tile.

    Args:
        seed: stateless seed.
        config: `AugmentConfig`.
        image_shape: ``(H, W)`` of the source image (may be tensors).
        input_shape: static ``(h, w)`` of the input tile.
        output_shape: static ``(h, w)`` of the output tile.

    Returns:
        A dict of tensors: ``origin`` int32 (2,), the top-left corner of the
        output tile in the image (uniform such that the tile lies inside the
        image, or the image inside the tile when it is smaller); ``matrix``
        float32 (2, 2), the rotation/flip/scale of the backward map;
        ``grid`` float32 (g, g, 2), the elastic control-point displacements
        (zeros when elastic deformation is off).
    """
    config = config or AugmentConfig.none()
    s_pos, s_matrix, s_grid = _split(_as_seed(seed), 3)
    origin = []
    sizes = (image_shape[0], image_shape[1])
    for size, out, s in zip(sizes, output_shape, _split(s_pos, 2)):
        size = tf.cast(size, tf.int32)
        lo = tf.minimum(0, size - out)
        hi = tf.maximum(0, size - out)
        origin.append(
            tf.random.stateless_uniform([], s, lo, hi + 1, dtype=tf.int32)
        )
    if config.elastic:
        grid = elastic_grid_values(
            s_grid, config.elastic_grid, config.elastic_sigma
        )
    else:
        grid = tf.zeros([config.elastic_grid, config.elastic_grid, 2])
    return {
        "origin": tf.stack(origin),
        "matrix": _random_matrix(s_matrix, config),
        "grid": grid,
    }


def transform_coordinates(params, input_shape, output_shape):
    """Source (rows, columns) of every input-tile pixel, two (h, w) tensors.

    Input-tile pixel ``p`` shows the source at ``o + A (p - c) + d(p)``:
    ``c`` is the tile centre, ``o`` the centre's position in the image
    (from ``params["origin"]``), ``A = params["matrix"]`` and ``d`` the
    field interpolated from ``params["grid"]`` over the input tile.
    """
    in_h, in_w = input_shape
    out_h, out_w = output_shape
    my, mx = (in_h - out_h) // 2, (in_w - out_w) // 2
    origin = tf.cast(params["origin"], tf.float32)
    cy = origin[0] - my + (in_h - 1) / 2
    cx = origin[1] - mx + (in_w - 1) / 2
    rows = (tf.range(in_h, dtype=tf.float32) - (in_h - 1) / 2)[:, None]
    cols = (tf.range(in_w, dtype=tf.float32) - (in_w - 1) / 2)[None, :]
    a = params["matrix"]
    field = interpolate_grid(params["grid"], (in_h, in_w))
    qy = (a[0, 0] * rows + cy) + a[0, 1] * cols + field[..., 0]
    qx = (a[1, 0] * rows + cx) + a[1, 1] * cols + field[..., 1]
    return qy, qx


def _flat(image):
    """(H, W) or (H, W, C) -> (H*W, C) plus the original rank."""
    rank2 = image.shape.rank == 2
    if rank2:
        image = image[..., None]
    return tf.reshape(image, [-1, tf.shape(image)[-1]]), rank2


def sample(image, coords, interpolation="bilinear"):
    """Sample `image` at float source coordinates, mirroring at the borders.

    Args:
        image: (H, W) or (H, W, C) tensor, any numeric dtype.
        coords: (..., 2) float (row, column) positions, or a ``(rows,
            columns)`` pair of equally shaped tensors.
        interpolation: "nearest" (keeps dtype and values), "bilinear" or
            "bicubic" (float32 result).

    Returns:
        Tensor of the coordinates' shape (+ ``(C,)`` for 3-D images).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {INTERPOLATIONS}. "
            f"Received: {interpolation!r}"
        )
    image = tf.convert_to_tensor(image)
    if isinstance(coords, tuple | list):
        qy, qx = coords
    else:
        qy, qx = coords[..., 0], coords[..., 1]
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    flat, rank2 = _flat(image)
    if interpolation == "bicubic":
        out = _sample_bicubic(flat, h, w, qy, qx)
    else:
        qy = _reflect_coordinate(tf.cast(qy, tf.float32), h)
        qx = _reflect_coordinate(tf.cast(qx, tf.float32), w)
        if interpolation == "nearest":
            # floor(q + 0.5): round half up, identical on every backend
            iy = tf.cast(tf.floor(qy + 0.5), tf.int32)
            ix = tf.cast(tf.floor(qx + 0.5), tf.int32)
            out = tf.gather(flat, iy * w + ix)
        else:
            y0, x0 = tf.floor(qy), tf.floor(qx)
            fy, fx = (qy - y0)[..., None], (qx - x0)[..., None]
            y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
            y1 = tf.minimum(y0 + 1, h - 1)  # weight 0 where clamped
            x1 = tf.minimum(x0 + 1, w - 1)

            def tap(iy, ix):
                return tf.cast(tf.gather(flat, iy * w + ix), tf.float32)

            top = tap(y0, x0) + (tap(y0, x1) - tap(y0, x0)) * fx
            bot = tap(y1, x0) + (tap(y1, x1) - tap(y1, x0)) * fx
            out = top + (bot - top) * fy
    return out[..., 0] if rank2 else out


def _sample_bicubic(flat, h, w, qy, qx):
    """Cubic convolution (Keys, a=-0.5) with mirrored taps."""
    y0, x0 = tf.floor(qy), tf.floor(qx)
    fy, fx = (qy - y0)[..., None], (qx - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    wy, wx = _keys_weights(fy), _keys_weights(fx)
    rows = [_reflect(y0 + i, h) * w for i in (-1, 0, 1, 2)]
    cols = [_reflect(x0 + j, w) for j in (-1, 0, 1, 2)]
    out = 0.0
    for row, wyi in zip(rows, wy):
        acc = 0.0
        for col, wxj in zip(cols, wx):
            acc += wxj * tf.cast(tf.gather(flat, row + col), tf.float32)
        out += wyi * acc
    return out


def random_gray(seed, config, shape):
    """Draw the random gray-value parameters of one tile.

    Returns a dict of tensors (only the enabled ones): ``gamma``,
    ``contrast``, ``brightness``, ``noise_std`` scalars and ``noise_u``,
    uniform numbers of `shape` that `apply_gray` turns into Gaussian noise.
    """
    s_b, s_c, s_g, s_n, s_ns = _split(_as_seed(seed), 5)
    params = {}
    if config.gamma:
        lo, hi = (math.log(v) for v in config.gamma)
        params["gamma"] = tf.exp(tf.random.stateless_uniform([], s_g, lo, hi))
    if config.contrast:
        lo, hi = config.contrast
        params["contrast"] = tf.random.stateless_uniform([], s_c, lo, hi)
    if config.brightness:
        b = config.brightness
        params["brightness"] = tf.random.stateless_uniform([], s_b, -b, b)
    if config.noise:
        params["noise_std"] = tf.random.stateless_uniform(
            [], s_ns, 0.0, config.noise
        )
        params["noise_u"] = tf.random.stateless_uniform(
            shape, s_n, minval=2.0**-24, maxval=1.0 - 2.0**-24
        )
    return params


def apply_gray(image, params):
    """Apply gray-value parameters from `random_gray` (no random ops).

    In this order: gamma on the tile rescaled to [0, 1] (and back), contrast
    around the tile mean, brightness offset, additive Gaussian noise
    (``noise_std * sqrt(2) * erfinv(2u - 1)``). Brightness and noise are
    fractions of the tile's gray-value range (max - min), so they act alike
    on 8-bit, 12-bit and float images.
    """
    image = tf.cast(image, tf.float32)
    if not params:
        return image
    # Offsets and noise are relative to the tile's gray-value range, so a
    # 12-bit image stored as uint16 (values up to ~0.06 after scaling) gets
    # the same relative variation as an 8-bit one.
    vmin, vmax = tf.reduce_min(image), tf.reduce_max(image)
    span = tf.maximum(vmax - vmin, 1e-6)
    if "gamma" in params:
        image = vmin + span * tf.pow((image - vmin) / span, params["gamma"])
    if "contrast" in params:
        mean = tf.reduce_mean(image)
        image = mean + (image - mean) * params["contrast"]
    if "brightness" in params:
        image = image + params["brightness"] * span
    if "noise_std" in params:
        gauss = math.sqrt(2.0) * tf.math.erfinv(2.0 * params["noise_u"] - 1.0)
        image = image + (params["noise_std"] * span) * gauss
    return image


def gray_value_augment(image, seed, config=None):
    """Random brightness, contrast, gamma and noise on a float image tile.

    Args:
        image: float32 (H, W) or (H, W, C), values nominally in [0, 1].
        seed: stateless seed.
        config: `AugmentConfig` (its gray-value fields are used).
    """
    config = config or AugmentConfig()
    image = tf.cast(image, tf.float32)
    return apply_gray(image, random_gray(seed, config, tf.shape(image)))


def _check_same_hw(image, *others):
    for other in others:
        if other is not None:
            tf.debugging.assert_equal(
                tf.shape(image)[:2],
                tf.shape(other)[:2],
                message="image, labels and weights must have the same height "
                "and width",
            )


def _has_gray(config):
    return bool(
        config.brightness or config.contrast or config.gamma or config.noise
    )


def warp_tile(
    image,
    labels,
    weights,
    params,
    *,
    input_shape,
    output_shape,
    interpolation="bilinear",
    mask_mirrored=False,
    gray=None,
):
    """Sample one tile with given transform parameters (no randomness).

    This is the heavy, deterministic part of the augmentation: it has no
    random ops, so it compiles well with XLA (``tf.function(warp_tile,
    jit_compile=True)``), which makes it several times faster on the CPU.

    Args:
        image: (H, W, C) float32.
        labels: (H, W) int32.
        weights: (H, W) float32.
        params: dict from `random_transform`.
        input_shape: static ``(h, w)`` of the input tile.
        output_shape: static ``(h, w)`` of the output tile.
        interpolation: of the image; labels and weights use nearest.
        mask_mirrored: weight 0 where the label comes from outside the image.
        gray: optional gray-value parameters from `random_gray`, applied to
            the image tile.

    Returns:
        ``(x, y, w)`` tiles.
    """
    in_h, in_w = input_shape
    out_h, out_w = output_shape
    my, mx = (in_h - out_h) // 2, (in_w - out_w) // 2
    qy, qx = transform_coordinates(params, input_shape, output_shape)
    x = tf.cast(sample(image, (qy, qx), interpolation), tf.float32)
    if gray:
        x = apply_gray(x, gray)
    out_coords = (
        qy[my : my + out_h, mx : mx + out_w],
        qx[my : my + out_h, mx : mx + out_w],
    )
    y = sample(labels, out_coords, "nearest")
    wt = sample(weights, out_coords, "nearest")
    if mask_mirrored:
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        iy = tf.cast(tf.floor(out_coords[0] + 0.5), tf.int32)
        ix = tf.cast(tf.floor(out_coords[1] + 0.5), tf.int32)
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        wt = wt * tf.cast(inside, wt.dtype)
    x = tf.ensure_shape(x, [in_h, in_w, image.shape[-1]])
    y = tf.ensure_shape(y, [out_h, out_w])
    wt = tf.ensure_shape(wt, [out_h, out_w])
    return x, y, wt


def augment_tile(
    image,
    labels,
    weights,
    seed,
    config,
    input_shape,
    output_shape,
    mask_mirrored=False,
    warp_fn=None,
):
    """Cut one randomly placed, randomly transformed training tile.

    The output tile (the part with labels) is placed uniformly at random so
    that it lies inside the image when the image is larger than the tile
    (otherwise so that the image lies inside it); the input tile carries the
    context margin around it, mirrored where it leaves the image. With no
    augmentation the tile position is integer and tiles are exact copies.

    Args:
        image: (H, W, C) float32 (see `keras_unet.io.to_float_image`).
        labels: (H, W) int32 class indices.
        weights: (H, W) float32 weights.
        seed: stateless seed.
        config: `AugmentConfig` or None (no augmentation).
        input_shape: ``(h, w)`` of the network's input tile (static ints).
        output_shape: ``(h, w)`` of its output tile (static ints).
        mask_mirrored: give weight 0 to label pixels whose source lies
            outside the image (mirrored context).
        warp_fn: optional replacement for `warp_tile`, e.g. its XLA-compiled
            ``tf.function`` (the tf.data pipeline does this). All random
            numbers are drawn outside it, so compiled and plain runs give
            the same tiles (to float rounding).

    Returns:
        ``(x, y, w)``: float32 (in_h, in_w, C), int32 (out_h, out_w),
        float32 (out_h, out_w).
    """
    config = config or AugmentConfig.none()
    s_geo, s_gray = _split(_as_seed(seed), 2)
    params = random_transform(
        s_geo, config, tf.shape(image)[:2], input_shape, output_shape
    )
    in_shape = tuple(input_shape)
    gray = random_gray(s_gray, config, [*in_shape, image.shape[-1]])
    return (warp_fn or warp_tile)(
        image,
        labels,
        weights,
        params,
        input_shape=in_shape,
        output_shape=tuple(output_shape),
        interpolation=config.interpolation,
        mask_mirrored=mask_mirrored,
        gray=gray,
    )


def random_augment(image, labels=None, weights=None, seed=0, config=None):
    """Apply the configured augmentation to a whole image (same size out).

    Geometric transforms (elastic, rotation, flips, scale) act on image,
    labels and weights identically (one coordinate map, nearest neighbour
    for labels and weights; rotations turn about the image centre);
    gray-value changes act on the image only. Integer images are not
    rescaled: convert with `keras_unet.io.to_float_image` first if the
    gray-value parameters are meant for [0, 1].

    Args:
        image: (H, W) or (H, W, C).
        labels: optional (H, W) integer labels.
        weights: optional (H, W) weight map.
        seed: stateless seed (int or shape-[2] tensor).
        config: `AugmentConfig` (default: the paper's recipe).

    Returns:
        The augmented image, or a tuple ``(image, labels[, weights])``.
    """
    config = config or AugmentConfig()
    image = tf.convert_to_tensor(image)
    _check_same_hw(image, labels, weights)
    s_geo, s_gray = _split(_as_seed(seed), 2)
    hw = tf.shape(image)[0], tf.shape(image)[1]
    shape = tuple(image.shape[:2])
    if None in shape:
        raise ValueError(
            "random_augment needs a static image size; inside tf.data use "
            "augment_tile, which takes the tile size."
        )
    params = random_transform(s_geo, config, hw, shape, shape)
    params["origin"] = tf.zeros([2], tf.int32)  # whole image, turn about centre
    coords = transform_coordinates(params, shape, shape)
    out = sample(image, coords, config.interpolation)
    if _has_gray(config):
        out = gray_value_augment(out, s_gray, config)
    results = [out]
    if labels is not None:
        results.append(sample(labels, coords, "nearest"))
    if weights is not None:
        results.append(sample(weights, coords, "nearest"))
    return results[0] if len(results) == 1 else tuple(results)


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
        image: (H, W) or (H, W, C) with a static size.
        labels: optional (H, W) integer labels.
        weights: optional (H, W) weight map.
        seed: stateless seed.
        grid: control points per axis (the paper: 3).
        sigma: standard deviation of their displacements in px (10).
        interpolation: for the image: "bilinear", "bicubic" or "nearest".

    Returns:
        The deformed image, or a tuple ``(image, labels[, weights])``.

    Examples:
        >>> img = tf.random.uniform((128, 128))
        >>> out = elastic_deform(img, seed=1)
    """
    image = tf.convert_to_tensor(image)
    _check_same_hw(image, labels, weights)
    shape = tuple(image.shape[:2])
    if None in shape:
        raise ValueError("elastic_deform needs a static image size.")
    field = elastic_field(seed, shape, grid, sigma)
    rows = tf.range(shape[0], dtype=tf.float32)[:, None]
    cols = tf.range(shape[1], dtype=tf.float32)[None, :]
    coords = (rows + field[..., 0], cols + field[..., 1])
    results = [sample(image, coords, interpolation)]
    if labels is not None:
        results.append(sample(labels, coords, "nearest"))
    if weights is not None:
        results.append(sample(weights, coords, "nearest"))
    return results[0] if len(results) == 1 else tuple(results)
