"""The paper's weight maps: separation borders, class balance, border term.

U-Net learns to separate touching cells because its loss weights every
pixel by a map computed from the ground truth (Ronneberger et al. 2015,
Sect. 3, Fig. 3):

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

with ``w_c`` balancing the class frequencies, ``d1`` and ``d2`` the
distances to the nearest and second-nearest cell, ``w0 = 10`` and
``sigma = 5`` pixels. Touching cells are first separated by thin background
lines (Fig. 3c); the border term then gives those lines, and the narrow gaps
between neighbouring cells, a large weight (Fig. 3d).

Everything here is numpy/scipy, runs once per label image (before
training), and is cached on disk by `cached_weight_maps` so that training
never recomputes it (`keras_unet.data.weight_cache`):

- `separate_instances`: binary target with touching instances split.
- `instances_from_binary`: cells of an ISBI-style cell/membrane label.
- `class_balance_weights`, `class_frequencies`: the ``w_c`` term.
- `two_nearest_distances`, `border_weights`: ``d1``, ``d2`` and the border
  term, computed exactly with one small distance transform per cell.
- `unet_weight_map`: the whole map (and, on request, the target).

Reference:
    Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical
    Image Segmentation. MICCAI 2015 (Sect. 3 and Fig. 3).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
from scipy import ndimage

from keras_unet.checks import check_number

__all__ = [
    "border_weights",
    "class_balance_weights",
    "class_frequencies",
    "instances_from_binary",
    "separate_instances",
    "two_nearest_distances",
    "unet_weight_map",
]

LABEL_TYPES = ("instances", "binary")

# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def _as_label_image(labels, name="instances") -> np.ndarray:
    """A 2D array of non-negative integer labels (a trailing 1-axis dropped)."""
    arr = np.asarray(labels)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"`{name}` must be one 2D label image of shape (height, width) "
            "(a trailing channel axis of size 1 is accepted); for a stack, "
            f"call once per image. Received: {name}.shape={arr.shape}"
        )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(
                f"`{name}` must hold integer labels; this float array has "
                "non-integer, NaN or infinite values. Received: "
                f"{name}.dtype={arr.dtype}"
            )
        if arr.min() < 0 or arr.max() >= 2**31:
            raise ValueError(
                f"`{name}` must hold labels in [0, 2**31). Received: "
                f"min={arr.min()}, max={arr.max()}"
            )
        return arr.astype(np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"`{name}` must be an integer (or bool) label image. "
            f"Received: {name}.dtype={arr.dtype}"
        )
    if np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise ValueError(
            f"`{name}` must not hold negative labels (0 is background, "
            f"positive ids are cells). Received: min={arr.min()}"
        )
    return arr


def _check_connectivity(connectivity, name="connectivity") -> int:
    if connectivity not in (1, 2) or isinstance(connectivity, bool):
        raise ValueError(
            f"`{name}` must be 1 (4-neighbourhood: pixels sharing an edge) "
            "or 2 (8-neighbourhood: edges and corners), as in "
            f"scipy.ndimage.generate_binary_structure. Received: "
            f"{name}={connectivity!r}"
        )
    return int(connectivity)


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------


def _neighbour_offsets(connectivity):
    """Half of the neighbourhood: each unordered neighbour pair once."""
    if connectivity == 1:
        return ((0, 1), (1, 0))
    return ((0, 1), (1, 0), (1, 1), (1, -1))


def _pair_views(arr, dy, dx):
    """Views (a, b) with b the neighbour of a at offset (dy, dx), dy >= 0."""
    h, w = arr.shape
    a = arr[0 : h - dy, max(0, -dx) : w - max(0, dx)]
    b = arr[dy:h, max(0, dx) : w - max(0, -dx)]
    return a, b


def separate_instances(
    instances, connectivity: int = 2, return_instances: bool = False
):
    """Binary target in which touching instances are split by background.

    The paper separates touching cells "using morphological operations"
    (Fig. 3c) without saying which. Here the rule is: a pixel of instance
    ``i`` becomes background if one of its neighbours belongs to another
    instance ``j`` (``j != 0``, ``j != i``). With ``connectivity=2`` (the
    default) the neighbours are the 8 pixels of its 3x3 neighbourhood,
    with ``connectivity=1`` the 4 pixels sharing an edge.

    Properties of this rule:

    - it is symmetric (both sides of a contact lose their contact pixels,
      so a straight contact becomes a 2 pixel wide background line) and does
      not depend on the numbering of the instances;
    - after separation no two pixels of different instances are neighbours
      (for the chosen connectivity). With the default 8-neighbourhood the
      separated cells do not even touch at corners, so any connected
      component labelling of the target finds no merged cells;
    - an instance only loses pixels where it touches another instance: a
      cell surrounded by background is unchanged, and the target is the
      plain foreground mask when there are fewer than two instances;
    - ids need not be consecutive; an id made of several pieces is one
      instance (its pieces are never separated from each other);
    - an instance thinner than the line (1-2 pixels, squeezed between two
      others) can disappear from the target.

    Args:
        instances: (H, W) integer instance image: 0 = background, every
            other value one instance (any ids, not necessarily consecutive).
            A trailing channel axis of size 1 is accepted.
        connectivity: 2 (default, 3x3 neighbourhood) or 1 (4-neighbourhood,
            thinner lines at diagonal contacts but cells may still touch at
            corners).
        return_instances: also return the instance image with the
            separation lines set to 0.

    Returns:
        ``target``: uint8 (H, W), 1 = foreground (cells), 0 = background
        (including the separation lines); or ``(target, separated)`` with
        ``separated`` the instance ids left on the target's foreground.

    Examples:
        >>> instances = np.zeros((5, 6), np.int32)
        >>> instances[1:4, 0:3] = 7
        >>> instances[1:4, 3:6] = 9
        >>> separate_instances(instances)
        array([[0, 0, 0, 0, 0, 0],
               [1, 1, 0, 0, 1, 1],
               [1, 1, 0, 0, 1, 1],
               [1, 1, 0, 0, 1, 1],
               [0, 0, 0, 0, 0, 0]], dtype=uint8)

    Reference:
        Ronneberger et al. 2015, Fig. 3c.
    """
    instances = _as_label_image(instances)
    connectivity = _check_connectivity(connectivity)
    remove = np.zeros(instances.shape, bool)
    for dy, dx in _neighbour_offsets(connectivity):
        a, b = _pair_views(instances, dy, dx)
        ra, rb = _pair_views(remove, dy, dx)
        contact = (a != b) & (a != 0) & (b != 0)
        ra |= contact
        rb |= contact
    separated = np.where(remove, 0, instances)
    target = (separated != 0).astype(np.uint8)
    if return_instances:
        return target, separated
    return target


def instances_from_binary(labels, connectivity: int = 1) -> np.ndarray:
    """Cells of a binary cell/membrane label, as an instance image.

    For ISBI 2012 style labels (0 = membrane, 255 or 1 = cell) every
    connected component of the cell class becomes one instance. The default
    ``connectivity=1`` (4-neighbourhood) is the right one for membrane
    labels: a one-pixel membrane running diagonally separates the cells on
    both sides only if cells are not allowed to connect through corners.

    Args:
        labels: (H, W) array with exactly two values (or fewer): 0 for
            membrane/background and one non-zero value for cells; bool is
            accepted.
        connectivity: 1 (default, 4-neighbourhood) or 2 (8-neighbourhood)
            for the cell components.

    Returns:
        int32 (H, W) instance image, cells numbered ``1..n``.

    Examples:
        >>> label = np.array([[255, 0, 255], [255, 0, 255]], np.uint8)
        >>> instances_from_binary(label)
        array([[1, 0, 2],
               [1, 0, 2]], dtype=int32)
    """
    labels = _as_label_image(labels, "labels")
    connectivity = _check_connectivity(connectivity)
    values = np.unique(labels)
    if len(values[values != 0]) > 1:
        shown = ", ".join(str(v) for v in values[:8])
        more = ", ..." if len(values) > 8 else ""
        raise ValueError(
            "A binary label must have at most one non-zero value (0 = "
            "membrane/background, e.g. 255 = cell). This one has "
            f"{len(values)} values; for an instance image use "
            "label_type='instances', for a grey label threshold it first "
            f"(labels > 127). Received: values=[{shown}{more}]"
        )
    structure = ndimage.generate_binary_structure(2, connectivity)
    instances, _ = ndimage.label(labels != 0, structure=structure)
    return instances.astype(np.int32)


# ---------------------------------------------------------------------------
# Class balance
# ---------------------------------------------------------------------------


def class_frequencies(masks, num_classes: int | None = None) -> np.ndarray:
    """Fraction of pixels of each class over a set of class-index masks.

    Args:
        masks: one (H, W) mask or an iterable of masks (class indices).
        num_classes: length of the result; defaults to the largest class
            index + 1.

    Returns:
        float64 array of shape (num_classes,) summing to 1.

    Examples:
        >>> class_frequencies([np.array([[0, 1], [1, 1]])])
        array([0.25, 0.75])
    """
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    counts = np.zeros(0, np.int64)
    for mask in masks:
        mask = _as_label_image(mask, "mask")
        c = np.bincount(mask.ravel())
        if len(c) > len(counts):
            c[: len(counts)] += counts
            counts = c
        else:
            counts[: len(c)] += c
    if counts.sum() == 0:
        raise ValueError("`masks` is empty. Received: no pixels")
    if num_classes is not None:
        if len(counts) > num_classes:
            raise ValueError(
                f"The masks hold class index {len(counts) - 1}, which is "
                f">= num_classes. Received: num_classes={num_classes}"
            )
        counts = np.pad(counts, (0, num_classes - len(counts)))
    return counts / counts.sum()


def _weight_table(class_weights, top) -> np.ndarray:
    """Per-class weights as an array indexed by class (NaN = not given)."""
    if isinstance(class_weights, dict):
        items = list(class_weights.items())
    else:
        try:
            items = list(enumerate(np.asarray(class_weights).ravel()))
        except TypeError:
            items = None
    ok = items is not None
    if ok:
        try:
            keys = [int(k) for k, _ in items]
            values = np.array([float(v) for _, v in items])
        except (TypeError, ValueError):
            ok = False
    if ok:
        ok = (
            len(items) > 0
            and min(keys) >= 0
            and bool(np.all(np.isfinite(values)))
            and bool(np.all(values >= 0))
        )
    if not ok:
        raise ValueError(
            "`class_weights` must be 'balanced', None, or per-class weights "
            "(a sequence indexed by class, or a dict {class: weight}) that "
            f"are finite and >= 0. Received: class_weights={class_weights!r}"
        )
    table = np.full(max(top, max(keys)) + 1, np.nan)
    table[keys] = values
    return table


def class_balance_weights(
    mask, class_weights="balanced", frequencies=None
) -> np.ndarray:
    """The class-balance term ``w_c(x)`` of the paper's weight map.

    Three ways to choose the weight ``w_k`` of class ``k``:

    - ``"balanced"`` (default), per image: ``w_k = N / (K * n_k)`` with
      ``N`` pixels, ``n_k`` of them of class ``k`` and ``K`` the number of
      classes present in the image. Every present class then carries the
      same total weight, and the mean of ``w_c`` over the image is exactly
      1 (so ``w_c`` does not change the scale of the loss). With a single
      class present, ``w_c`` is 1 everywhere.
    - ``"balanced"`` with dataset ``frequencies`` (see
      `class_frequencies`): ``w_k = 1 / (K * f_k)``, ``K`` the number of
      classes with ``f_k > 0``; the mean weight over the dataset is 1.
    - fixed weights: a sequence (index = class) or a dict
      ``{class: weight}``. ``None`` means 1 for every class.

    Args:
        mask: (H, W) class indices (0 = background, 1 = cell, ...); bool is
            accepted.
        class_weights: ``"balanced"``, a sequence or dict of per-class
            weights, or None.
        frequencies: per-class pixel fractions of the dataset, used with
            ``"balanced"`` instead of the image's own frequencies.

    Returns:
        float32 (H, W) array ``w_c``.

    Examples:
        >>> mask = np.array([[0, 0, 0, 1]])
        >>> class_balance_weights(mask)
        array([[0.6666667, 0.6666667, 0.6666667, 2.       ]], dtype=float32)
        >>> class_balance_weights(mask, {0: 1.0, 1: 5.0})
        array([[1., 1., 1., 5.]], dtype=float32)

    Reference:
        Ronneberger et al. 2015, Sect. 3 ("w_c is the weight map to balance
        the class frequencies").
    """
    mask = _as_label_image(mask, "mask")
    counts = np.bincount(mask.ravel())
    top = len(counts) - 1
    if class_weights is None:
        if frequencies is not None:
            raise ValueError(
                "`frequencies` is only used with class_weights='balanced'. "
                f"Received: class_weights=None, frequencies={frequencies!r}"
            )
        return np.ones(mask.shape, np.float32)
    if isinstance(class_weights, str) and class_weights == "balanced":
        if frequencies is None:
            present = counts > 0
            table = np.zeros(len(counts))
            table[present] = mask.size / (present.sum() * counts[present])
        else:
            freq = np.asarray(frequencies, np.float64).ravel()
            if (
                freq.size == 0
                or not np.all(np.isfinite(freq))
                or np.any(freq < 0)
                or freq.sum() <= 0
            ):
                raise ValueError(
                    "`frequencies` must be non-negative per-class pixel "
                    "fractions with a positive sum (see class_frequencies). "
                    f"Received: frequencies={frequencies!r}"
                )
            freq = np.pad(freq / freq.sum(), (0, max(0, top + 1 - freq.size)))
            missing = np.flatnonzero((counts > 0) & (freq[: top + 1] == 0))
            if len(missing):
                raise ValueError(
                    f"The mask holds class {int(missing[0])}, which has no "
                    "frequency (or frequency 0) in `frequencies`; compute "
                    "them over the same kind of masks with "
                    "class_frequencies(). Received: "
                    f"frequencies={frequencies!r}"
                )
            used = freq > 0
            table = np.zeros(len(freq))
            table[used] = 1.0 / (used.sum() * freq[used])
    elif isinstance(class_weights, str):
        raise ValueError(
            "`class_weights` must be 'balanced', None, or per-class weights "
            "(a sequence indexed by class, or a dict {class: weight}). "
            f"Received: class_weights={class_weights!r}"
        )
    else:
        if frequencies is not None:
            raise ValueError(
                "`frequencies` is only used with class_weights='balanced'. "
                f"Received: frequencies={frequencies!r}"
            )
        table = _weight_table(class_weights, top)
        missing = np.flatnonzero((counts > 0) & np.isnan(table[: top + 1]))
        if len(missing):
            raise ValueError(
                f"The mask holds class {int(missing[0])} but `class_weights` "
                "gives no weight for it (one weight per class index is "
                f"needed). Received: class_weights={class_weights!r}"
            )
    return table[mask].astype(np.float32)


# ---------------------------------------------------------------------------
# Border term
# ---------------------------------------------------------------------------


def _cutoff_distance(w0, sigma, tol):
    """Largest d1 + d2 at which the border term is still >= tol."""
    if tol <= 0:
        return math.inf
    if w0 <= tol:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tol))


def _cell_boxes(instances):
    """[(id, (row slice, col slice))] of every id present (not 0)."""
    top = int(instances.max())
    if top == 0:
        return []
    if top <= max(4 * instances.size, 1 << 16):
        objects = ndimage.find_objects(instances)
        return [(i, sl) for i, sl in enumerate(objects, 1) if sl is not None]
    # Huge ids (e.g. hashes): find the boxes on ids numbered 1..n.
    ids, inverse = np.unique(instances, return_inverse=True)
    shift = int(ids[0] != 0)  # without background, ids[0] is a cell
    compact = inverse.reshape(instances.shape).astype(np.int64) + shift
    objects = ndimage.find_objects(compact)
    return [(ids[k - shift], sl) for k, sl in enumerate(objects, 1)]


def two_nearest_distances(instances, max_distance: float = math.inf):
    """Distances ``d1 <= d2`` to the nearest and second-nearest instance.

    For every pixel ``x`` and instance ``i`` let ``d_i(x)`` be the Euclidean
    distance (in pixels, between pixel centres) from ``x`` to the nearest
    pixel of ``i``, that is ``scipy.ndimage.distance_transform_edt(
    instances != i)``. ``d1(x)`` and ``d2(x)`` are the two smallest of the
    ``d_i(x)`` over all instances (``inf`` where there are fewer than one or
    two instances). An id made of several pieces counts as one instance.
    On a pixel of instance ``i``, ``d_i = 0``.

    The computation is exact and fast: one distance transform per instance,
    restricted to the instance's bounding box grown by ``max_distance``.
    Outside that box ``d_i > max_distance``, so wherever the true
    ``d1 + d2 <= max_distance`` both values are exact (both instances' boxes
    cover the pixel, and no other instance is closer). Where the true
    ``d1 + d2 > max_distance`` the returned values are each >= the true ones
    (possibly ``inf``), so ``d1 + d2 > max_distance`` still holds: the sum
    is never underestimated. ``max_distance=inf`` computes every ``d_i`` on
    the whole image (exact everywhere, one full-image transform per cell).

    Args:
        instances: (H, W) integer instance image (0 = background), any ids.
        max_distance: the largest ``d1 + d2`` that must be exact.

    Returns:
        ``(d1, d2)``: float64 arrays of shape (H, W).

    Examples:
        >>> instances = np.array([[1, 0, 0, 0, 2]])
        >>> d1, d2 = two_nearest_distances(instances)
        >>> float(d1[0, 2]), float(d2[0, 2])
        (2.0, 2.0)
    """
    instances = _as_label_image(instances)
    if not (
        isinstance(max_distance, numbers.Real)
        and not isinstance(max_distance, bool)
        and max_distance >= 0
    ):
        raise ValueError(
            "`max_distance` must be a number >= 0 (or math.inf). "
            f"Received: max_distance={max_distance!r}"
        )
    h, w = instances.shape
    d1 = np.full((h, w), np.inf)
    d2 = np.full((h, w), np.inf)
    if math.isinf(max_distance):
        grow = max(h, w)
    else:
        # +1: a pixel just outside the grown box is > max_distance away.
        grow = int(math.floor(max_distance)) + 1
    for cell_id, (rows, cols) in _cell_boxes(instances):
        r0, r1 = max(rows.start - grow, 0), min(rows.stop + grow, h)
        c0, c1 = max(cols.start - grow, 0), min(cols.stop + grow, w)
        di = ndimage.distance_transform_edt(instances[r0:r1, c0:c1] != cell_id)
        a = d1[r0:r1, c0:c1]
        b = d2[r0:r1, c0:c1]
        np.minimum(b, np.maximum(a, di), out=b)
        np.minimum(a, di, out=a)
    return d1, d2


def border_weights(
    instances, w0: float = 10.0, sigma: float = 5.0, tol: float = 1e-6
) -> np.ndarray:
    """The border term ``w0 * exp(-(d1 + d2)**2 / (2 * sigma**2))``.

    Evaluated on background pixels (``instances == 0``) with ``d1``, ``d2``
    as defined in `two_nearest_distances`; it is 0 on cells, and 0
    everywhere with fewer than two instances.

    Truncation: where the term is smaller than ``tol`` it is set to exactly
    0. This is what makes it fast: the term is below ``tol`` exactly when
    ``d1 + d2 > D = sigma * sqrt(2 * ln(w0 / tol))`` (28.4 px for the
    paper's w0 = 10, sigma = 5 and the default tol = 1e-6), so each cell's
    distance transform only needs its bounding box grown by ``D``. Where
    the term is >= ``tol`` it equals the untruncated definition (up to
    float32 rounding). ``tol=0`` disables the truncation (one full-image
    distance transform per cell: exact everywhere, and slow).

    Args:
        instances: (H, W) integer instance image (0 = background), any ids.
        w0: weight at the border (10 in the paper), >= 0.
        sigma: width in pixels (5 in the paper), > 0.
        tol: values below this are set to 0 (see above), >= 0.

    Returns:
        float32 (H, W) array.

    Examples:
        >>> instances = np.array([[1, 1, 0, 2, 2]])
        >>> border_weights(instances).round(3)
        array([[0.   , 0.   , 9.231, 0.   , 0.   ]], dtype=float32)

    Reference:
        Ronneberger et al. 2015, Sect. 3, Eq. (2).
    """
    instances = _as_label_image(instances)
    w0 = check_number(w0, "w0", 0.0, hint="the paper uses 10")
    sigma = check_number(sigma, "sigma", 0.0, strict=True, hint="paper: 5")
    tol = check_number(tol, "tol", 0.0)
    out = np.zeros(instances.shape, np.float32)
    cutoff = _cutoff_distance(w0, sigma, tol)
    if w0 == 0 or cutoff == 0:
        return out
    d1, d2 = two_nearest_distances(instances, cutoff)
    background = instances == 0
    s = d1[background] + d2[background]
    term = w0 * np.exp(-(s**2) / (2.0 * sigma**2))
    term[term < tol] = 0.0
    out[background] = term
    return out


# ---------------------------------------------------------------------------
# The weight map
# ---------------------------------------------------------------------------


def _looks_binary(labels) -> bool:
    """bool, or uint8 with exactly the values 0 and 255 (an ISBI label)."""
    if labels.dtype == bool:
        return True
    if labels.dtype != np.uint8:
        return False
    counts = np.bincount(labels.ravel(), minlength=256)
    return bool(
        counts[0] and counts[255] and counts.sum() == counts[0] + counts[255]
    )


def unet_weight_map(
    labels,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights="balanced",
    *,
    frequencies=None,
    label_type: str = "instances",
    separate: bool = True,
    connectivity: int = 2,
    binary_connectivity: int = 1,
    tol: float = 1e-6,
    return_target: bool = False,
):
    """The paper's weight map ``w = w_c + w0 * exp(-(d1 + d2)**2 / 2s**2)``.

    What is computed, step by step:

    1. Cells. ``label_type="instances"``: ``labels`` is an instance image
       (0 = background, any other id one cell, ids need not be consecutive,
       an id in several pieces is one cell). ``label_type="binary"``: an
       ISBI-style cell/membrane label (0 = membrane, 255 or 1 = cell); the
       cells are the connected components of the cell class
       (``binary_connectivity=1``, 4-neighbourhood, see
       `instances_from_binary`).
    2. Target. For instances with ``separate=True``, touching cells are
       split by background lines (`separate_instances` with
       ``connectivity``, Fig. 3c). Binary labels are used as given (their
       cells are already separated by membrane). ``target`` = 1 on the
       remaining cell pixels, 0 elsewhere: this is the label to train on.
    3. Class balance ``w_c`` from the target (`class_balance_weights` with
       ``class_weights`` and ``frequencies``; by default per image, mean 1).
    4. Border term on the target's background, with ``d1``, ``d2`` the
       distances to the nearest and second-nearest cell of the *target*:
       for a background pixel ``x``, the two smallest of
       ``scipy.ndimage.distance_transform_edt(separated != i)[x]`` over the
       cells ``i`` left after separation (see `two_nearest_distances`). The
       separation lines are background of the target, so they get the
       largest weights (``d1 + d2`` is 2-3 px there: about 8-9 for w0=10,
       sigma=5), as in Fig. 3d. With fewer than two cells the term is 0;
       ``w0=0`` leaves only ``w_c``. Values below ``tol`` are set to
       exactly 0 (see `border_weights`; the default 1e-6 is far below any
       weight that matters, ``tol=0`` computes the term everywhere).

    Args:
        labels: (H, W) instance image or binary label (see ``label_type``).
        w0: border weight (10 in the paper).
        sigma: border width in pixels (5 in the paper).
        class_weights: ``"balanced"`` (default), per-class weights (sequence
            or dict) or None (w_c = 1); see `class_balance_weights`.
        frequencies: dataset class frequencies for ``"balanced"``.
        label_type: ``"instances"`` (default) or ``"binary"``.
        separate: split touching instances (only for instances).
        connectivity: neighbourhood of the separation rule (2: 3x3).
        binary_connectivity: connectivity of the cell components of a
            binary label (1: 4-neighbourhood).
        tol: border-term values below ``tol`` become 0.
        return_target: also return the target.

    Returns:
        float32 (H, W) weight map, or ``(target, weights)`` with ``target``
        uint8 (H, W), 1 = cell, 0 = background.

    Examples:
        >>> instances = np.zeros((64, 64), np.int32)
        >>> instances[10:30, 10:32] = 3
        >>> instances[10:30, 32:50] = 8      # touches cell 3
        >>> target, w = unet_weight_map(instances, return_target=True)
        >>> int(target[20, 31]), int(target[20, 32])   # the separation line
        (0, 0)
        >>> bool(w[20, 31] > 8)
        True

    Reference:
        Ronneberger et al. 2015, Sect. 3, Eq. (2), Fig. 3.
    """
    if label_type not in LABEL_TYPES:
        raise ValueError(
            f"`label_type` must be one of {LABEL_TYPES}: 'instances' for an "
            "instance image (one id per cell), 'binary' for a cell/membrane "
            f"label such as ISBI 2012. Received: label_type={label_type!r}"
        )
    arr = np.asarray(labels)
    if label_type == "binary":
        separated = instances_from_binary(arr, binary_connectivity)
    else:
        instances = _as_label_image(arr, "labels")
        if _looks_binary(arr):
            n = instances_from_binary(arr).max()
            if n > 1:
                warnings.warn(
                    "`labels` has only the values 0 and 255 (or is bool), "
                    f"i.e. one instance id, but {n} separate regions: this "
                    "looks like a binary cell/membrane label. Pass "
                    "label_type='binary' to treat every connected region as "
                    "a cell (otherwise there is no border term).",
                    stacklevel=2,
                )
        if separate:
            _, separated = separate_instances(
                instances, connectivity, return_instances=True
            )
        else:
            separated = instances
    target = (separated != 0).astype(np.uint8)
    weights = class_balance_weights(target, class_weights, frequencies)
    weights += border_weights(separated, w0, sigma, tol)
    if return_target:
        return target, weights
    return weights
