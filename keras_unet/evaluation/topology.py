"""2D digital topology for the warping error (numpy only).

The warping error of Jain et al. (2010) relaxes the ground truth toward a
proposal by flipping *simple* pixels only: pixels whose flip changes neither
the number of cells nor the number of membrane pieces, nor creates or fills a
hole. This module holds the simple-point test (a 256-entry lookup table over
the 3x3 neighbourhood) and the vectorized relaxation used by
`keras_unet.evaluation.isbi.warping_error`.

Digital topology pair: foreground (cells, value 1) is 4-connected and
background (membranes, value 0) 8-connected, as in Fiji's
``trainableSegmentation.metrics.WarpingError.simplePointWarp2d``, which
calls ``simple2DBertrand(patch, 4)``: the 3x3 patch is placed in the middle
plane of a 3x3x3 cube and tested with Bertrand & Malandain's 3D simple-point
test for 6-connected foreground / 26-connected background; restricted to one
plane that is the 2D pair (4, 8). A diagonal line of membrane pixels
therefore separates two cells, and a one-pixel diagonal gap does not merge
them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NEIGHBOUR_OFFSETS", "SIMPLE_LUT", "neighbour_codes", "warp"]

# (dy, dx) of the 8 neighbours; neighbour k sets bit k of the code. The
# order is point-symmetric: offset 7 - k is minus offset k.
NEIGHBOUR_OFFSETS = (
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, -1),
    (0, 1),
    (1, -1),
    (1, 0),
    (1, 1),
)
# The ring around the centre in cyclic order N, NE, E, SE, S, SW, W, NW, as
# bit indices into NEIGHBOUR_OFFSETS. Even ring positions are the 4-neighbours.
_RING_BITS = (1, 2, 4, 7, 6, 5, 3, 0)


def _components(members, adjacent) -> list[set]:
    """Connected components of `members` under the relation `adjacent`."""
    comps: list[set] = []
    for m in members:
        touching = [c for c in comps if any(adjacent(m, x) for x in c)]
        comps = [c for c in comps if all(c is not t for t in touching)]
        comps.append({m}.union(*touching))
    return comps


def _is_simple(code: int) -> bool:
    """Simple-point test from the topological numbers of the ring.

    With 4-connected foreground and 8-connected background, the centre is
    simple iff T4 (the number of 4-components of foreground ring pixels
    that contain a 4-neighbour of the centre) is 1 and T8 (the number of
    8-components of background ring pixels) is 1. The test does not depend
    on the centre's own value.
    """
    ring = [(code >> bit) & 1 for bit in _RING_BITS]

    def consecutive(a, b):  # ring neighbours: always 4-adjacent
        return (a - b) % 8 in (1, 7)

    def adjacent8(a, b):  # also two 4-neighbours around a corner
        return consecutive(a, b) or (
            a % 2 == 0 and b % 2 == 0 and (a - b) % 8 in (2, 6)
        )

    fg = _components([i for i in range(8) if ring[i]], consecutive)
    t4 = sum(1 for c in fg if any(i % 2 == 0 for i in c))
    t8 = len(_components([i for i in range(8) if not ring[i]], adjacent8))
    return t4 == 1 and t8 == 1


def _build_lut() -> np.ndarray:
    lut = np.array([_is_simple(code) for code in range(256)], dtype=bool)
    lut.setflags(write=False)
    return lut


#: ``SIMPLE_LUT[code]`` is True when a pixel whose 8 neighbours form `code`
#: (bit k set when neighbour ``NEIGHBOUR_OFFSETS[k]`` is foreground) is a
#: simple point for 4-connected foreground and 8-connected background.
SIMPLE_LUT = _build_lut()


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """The 8-bit neighbourhood code of every pixel of a binary image.

    Pixels outside the image count as background (0).
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    codes = np.zeros((h, w), np.uint8)
    for bit, (dy, dx) in enumerate(NEIGHBOUR_OFFSETS):
        codes |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] << bit
    return codes


def warp(source, target, confidence) -> np.ndarray:
    """Warp binary `source` toward `target` by flipping simple pixels only.

    Exactly Fiji's ``WarpingError.simplePointWarp2d``, vectorized. Fiji
    repeats passes until a pass flips nothing; each pass lists the pixels
    where source and target disagree, sorts them by `confidence`
    (descending; ties in column-major scan order, as Java's stable sort of
    the x-outer, y-inner scan leaves them) and visits them one by one,
    flipping each pixel that is simple at that moment.

    The sequential visit is reproduced exactly with whole-array steps: a
    pixel's decision depends only on its 8 neighbours, so only the order
    between *adjacent* disagreeing pixels matters. A pass decides, wave
    after wave, every pixel whose earlier adjacent disagreeing pixels are
    all decided (a topological sort of that order); pixels of one wave are
    pairwise non-adjacent, so deciding them at once equals deciding them
    one by one. A pass also skips the pixels that cannot flip: those whose
    neighbourhood has not changed since they were last found non-simple and
    that no earlier flip in the pass can reach. Each pass costs time in
    proportion to the pixels it visits.

    Args:
        source: (H, W) bool, foreground = 1 (4-connected).
        target: (H, W) bool.
        confidence: (H, W) float, larger = visited earlier (compared in
            float32, as Fiji stores it).

    Returns:
        The warped source, (H, W) bool. Outside the image counts as
        background, as Fiji pads with 0.
    """
    relax = _Relaxation(source, target, confidence)
    # A pass visits the pixels that may be simple now (never visited, or a
    # neighbour flipped since their last visit) and, by induction, every
    # disagreeing pixel after an adjacent visited one in the order (an
    # earlier flip may have made it simple). No other pixel can flip.
    dirty = relax.pixels
    while dirty.size:
        visit = relax.pass_pixels(dirty)
        flipped = relax.decide(visit)
        if not flipped.size:
            break
        dirty = relax.touched(flipped)
    return relax.result()


class _Relaxation:
    """The flat, 1-pixel padded arrays of one `warp` and its steps.

    Pixel indices are flat indices into the padded (H + 2, W + 2) image;
    the border agrees by construction, so it is never visited.
    """

    def __init__(self, source, target, confidence):
        source = np.asarray(source, dtype=bool)
        h, w = source.shape
        self.shape = hp, wp = h + 2, w + 2
        self.state = _padded(source, np.uint8).ravel()
        goal = _padded(np.asarray(target, dtype=bool), np.uint8).ravel()
        self.codes = _padded(neighbour_codes(source), np.uint8).ravel()
        # Disagreements only ever turn into agreements, so Fiji's visit
        # order of every pass is the order of the first pass restricted to
        # what still disagrees: rank the first pass's pixels by confidence
        # (float32, descending), then column-major scan position.
        self.disagree = self.state != goal
        self.pixels = np.flatnonzero(self.disagree)
        conf = _padded(np.asarray(confidence, dtype=np.float32), np.float32)
        row, col = np.divmod(self.pixels, wp)
        order = np.lexsort((row, col, -conf.ravel()[self.pixels]))
        # int32 indices halve the memory where they suffice
        index = np.int32 if hp * wp < 2**31 else np.int64
        self.index = index
        self.rank = np.full(hp * wp, -1, index)
        self.rank[self.pixels[order]] = np.arange(self.pixels.size, dtype=index)
        self.offsets = np.array([dy * wp + dx for dy, dx in NEIGHBOUR_OFFSETS])
        # Flipping p changes bit (7 - k) of its neighbour p + offsets[k].
        self.update_bits = np.array([1 << (7 - k) for k in range(8)], np.uint8)
        self.owner = np.zeros(hp * wp, index)
        self.member = np.zeros(hp * wp, bool)  # visited in the current pass
        self.waiting = np.zeros(hp * wp, np.int8)  # earlier neighbours to do

    def unique(self, idx):
        """The distinct values of `idx`, in O(len(idx))."""
        pos = np.arange(idx.size, dtype=self.index)
        self.owner[idx] = pos
        return idx[self.owner[idx] == pos]

    def neighbours(self, pixels, later):
        """Neighbours of `pixels` and which disagree and come after/before."""
        nb = pixels[:, None] + self.offsets
        r = self.rank[pixels][:, None]
        earlier_or_later = (self.rank[nb] > r) if later else (self.rank[nb] < r)
        return nb, self.disagree[nb] & earlier_or_later

    def pass_pixels(self, dirty):
        """`dirty` and every disagreeing pixel after an adjacent visited one.

        Marks them as members of the pass.
        """
        self.member[dirty] = True
        frontier, visit = dirty, [dirty]
        while frontier.size:
            nb, keep = self.neighbours(frontier, later=True)
            nb = nb[keep]
            frontier = self.unique(nb[~self.member[nb]])
            self.member[frontier] = True
            visit.append(frontier)
        return np.concatenate(visit)

    def decide(self, visit):
        """Visit the pass's pixels in the order; return those flipped.

        A whole wave is decided at a time: a pixel is decided once all its
        earlier visited neighbours are.
        """
        nb, keep = self.neighbours(visit, later=False)
        self.waiting[visit] = (keep & self.member[nb]).sum(axis=1)
        wave = visit[self.waiting[visit] == 0]
        flipped = [wave[:0]]
        while wave.size:
            group = wave[SIMPLE_LUT[self.codes[wave]]]
            if group.size:
                self.state[group] ^= 1
                for off, bit in zip(self.offsets, self.update_bits):
                    self.codes[group + off] ^= bit
                flipped.append(group)
            nb, keep = self.neighbours(wave, later=True)
            nb = nb[keep & self.member[nb]]
            np.subtract.at(self.waiting, nb, 1)
            nb = self.unique(nb)
            wave = nb[self.waiting[nb] == 0]
        self.member[visit] = False
        return np.concatenate(flipped)

    def touched(self, flipped):
        """The disagreeing pixels next to a flipped one (may be simple now)."""
        self.disagree[flipped] = False
        near = self.unique((flipped[:, None] + self.offsets).ravel())
        return near[self.disagree[near]]

    def result(self):
        return self.state.reshape(self.shape)[1:-1, 1:-1].astype(bool)


def _padded(a, dtype):
    """`a` with a 1-pixel border of zeros, as `dtype`."""
    out = np.zeros((a.shape[0] + 2, a.shape[1] + 2), dtype)
    out[1:-1, 1:-1] = a
    return out
