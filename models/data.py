"""Locally generated image data for the embedded default supernet ("colour digits").

numpy + scikit-learn only (no torch), so the load generator can import it cheaply.

sklearn's bundled 8x8 handwritten digits become 3x32x32 colour images: a random affine warp
(rotation, scale, shear, shift) resamples the digit straight from its 8x8 grid, then a random
foreground/background colour pair, a few distractor strokes and pixel noise are added. The BASE
digits are split into train / held-out before any augmentation, so held-out accuracy measures
generalisation to unseen writers, not to new jitter of seen images.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

SIZE = 32
NUM_CLASSES = 10
INPUT_SHAPE = (3, SIZE, SIZE)
HELDOUT_FRACTION = 0.3          # of the 1797 base digits
SPLIT_SEED = 20240611
HELDOUT_SEED = 7
HELDOUT_SIZE = 3000
# The network's normalisation of [0, 1] pixels (models/inputs.py states it to clients; the
# worker applies it to what they send, generate() applies it for training and evaluation).
_MEAN = 0.5
_STD = 0.25


@lru_cache(maxsize=1)
def _base() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)          # [1797, 8, 8] in [0, 1]
    labels = d.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    train_idx, held_idx = [], []
    for c in range(NUM_CLASSES):                            # stratified split
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = round(len(idx) * HELDOUT_FRACTION)
        held_idx.extend(idx[:n_held])
        train_idx.extend(idx[n_held:])
    tr, he = np.sort(train_idx), np.sort(held_idx)
    return images[tr], labels[tr], images[he], labels[he]


def base_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The un-augmented 8x8 base digits of one split ("train" or "heldout")."""
    tr_x, tr_y, he_x, he_y = _base()
    if split == "train":
        return tr_x, tr_y
    if split == "heldout":
        return he_x, he_y
    raise ValueError(f"unknown split {split!r}; expected 'train' or 'heldout'")


def _bilinear(img: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample img [N, 8, 8] at float coordinates [N, H, W]; zero outside."""
    n, h, w = img.shape
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    fy = (sy - y0).astype(np.float32)
    fx = (sx - x0).astype(np.float32)
    batch = np.arange(n)[:, None, None]
    out = np.zeros(sy.shape, dtype=np.float32)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            v = img[batch, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
            out += np.where(ok, v, 0.0) * wy * wx
    return out


def normalise(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] pixels -> network input, in float32 as the worker computes it (bit-identical)."""
    return ((pixels.astype(np.float32, copy=False) - np.float32(_MEAN)) / np.float32(_STD))


def render(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augment base digits [N, 8, 8] in [0,1] into normalised colour images [N, 3, 32, 32]."""
    return normalise(render_pixels(images, rng))


def render_pixels(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Augment base digits [N, 8, 8] in [0,1] into colour images [N, 3, 32, 32] in [0, 1]."""
    n = images.shape[0]
    # Affine map from output pixel (centred) to source pixel (centred); the digit nominally
    # fills ~26 px of the 32 px canvas.
    ang = rng.uniform(-0.3, 0.3, n)
    scale = rng.uniform(0.75, 1.05, n) * (SIZE * 0.8 / 8.0)
    shear = rng.uniform(-0.25, 0.25, n)
    aspect = np.exp(rng.uniform(-0.15, 0.15, n))
    shift = rng.uniform(-3.0, 3.0, (n, 2))
    c, s = np.cos(ang), np.sin(ang)
    # forward matrix A = R @ Shear @ diag(scale*aspect, scale/aspect); we need A^-1
    a11 = c * scale * aspect
    a12 = (c * shear - s) * scale / aspect
    a21 = s * scale * aspect
    a22 = (s * shear + c) * scale / aspect
    det = a11 * a22 - a12 * a21
    i11, i12, i21, i22 = a22 / det, -a12 / det, -a21 / det, a11 / det
    grid = np.arange(SIZE, dtype=np.float32) - (SIZE - 1) / 2.0
    oy = grid[None, :, None] - shift[:, 0, None, None]
    ox = grid[None, None, :] - shift[:, 1, None, None]
    sx = i11[:, None, None] * ox + i12[:, None, None] * oy + 3.5
    sy = i21[:, None, None] * ox + i22[:, None, None] * oy + 3.5
    mask = _bilinear(images, sy, sx)                        # [N, 32, 32] in [0, 1]
    # Stroke thickness varies: a random gamma thins or fattens the anti-aliased digit.
    mask = np.clip(mask, 0.0, 1.0) ** rng.uniform(0.5, 1.6, (n, 1, 1)).astype(np.float32)

    # Distractor strokes: short random line segments in the foreground colour's family.
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    clutter = np.zeros_like(mask)
    for _ in range(1):
        p0 = rng.uniform(0, SIZE, (n, 2)).astype(np.float32)
        d = rng.normal(size=(n, 2)).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-6
        length = rng.uniform(4, 11, n).astype(np.float32)
        rel_y = yy[None] - p0[:, 0, None, None]
        rel_x = xx[None] - p0[:, 1, None, None]
        t = np.clip(rel_y * d[:, 0, None, None] + rel_x * d[:, 1, None, None], 0, length[:, None, None])
        dist = np.hypot(rel_y - t * d[:, 0, None, None], rel_x - t * d[:, 1, None, None])
        present = (rng.random(n) < 0.5).astype(np.float32)[:, None, None]
        clutter = np.maximum(clutter, present * np.clip(1.2 - dist, 0, 1))
    clutter *= rng.uniform(0.3, 0.6, (n, 1, 1)).astype(np.float32)

    # Colours: a dark background and a light foreground of independent random hues, so colour
    # carries no label information; a smooth gradient over the background adds low-frequency
    # clutter.
    bg = rng.uniform(0.0, 0.45, (n, 3)).astype(np.float32)
    fg = rng.uniform(0.55, 1.0, (n, 3)).astype(np.float32)
    grad = rng.normal(0, 0.15, (n, 3, 2)).astype(np.float32)
    ramp = (grad[:, :, 0, None, None] * (yy / SIZE - 0.5)[None, None]
            + grad[:, :, 1, None, None] * (xx / SIZE - 0.5)[None, None])
    ink = np.maximum(mask, clutter)[:, None]               # [N, 1, 32, 32]
    img = bg[:, :, None, None] + ramp
    img = img * (1.0 - ink) + fg[:, :, None, None] * ink
    img += rng.normal(0, 1, img.shape).astype(np.float32) * rng.uniform(0.02, 0.15, (n, 1, 1, 1)).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def generate(split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` augmented samples of a split, reproducible from `seed`: (X [n,3,32,32] f32, y [n] i64)."""
    x, y = generate_pixels(split, n, seed)
    return normalise(x), y


def generate_pixels(split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """generate() before normalisation: X in [0, 1], what a client sends."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    base_x, base_y = base_split(split)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(base_x), n)
    return render_pixels(base_x[idx], rng), base_y[idx].copy()


def train_batches(batch_size: int, seed: int):
    """Endless stream of fresh augmented training batches."""
    rng = np.random.default_rng(seed)
    base_x, base_y = base_split("train")
    while True:
        idx = rng.integers(0, len(base_x), batch_size)
        yield render(base_x[idx], rng), base_y[idx].copy()


@lru_cache(maxsize=2)
def _heldout_cached(name: str) -> tuple[np.ndarray, np.ndarray]:
    return _local_heldout(name, generate)


def _local_heldout(name: str, make) -> tuple[np.ndarray, np.ndarray]:
    """The held-out set of a zoo model with locally generated data, read-only; `make` is
    generate (normalised images) or generate_pixels (what a client sends)."""
    if name == "transformer":           # the embedded transformer's MNIST-1D signals
        from models import signals

        return signals.heldout()
    if name != "default":
        raise ValueError(f"no held-out set for {name!r}; only 'default' has locally generated data")
    x, y = make("heldout", HELDOUT_SIZE, HELDOUT_SEED)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def heldout(name: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """The fixed held-out set: (X float32 [N, 3, 32, 32], y int64 [N]), identical on every call."""
    return _heldout_cached(name)


@lru_cache(maxsize=2)
def heldout_pixels(name: str = "default") -> tuple[np.ndarray, np.ndarray]:
    """The held-out set as a client sends it: pixels in [0, 1] (heldout() = normalise(these));
    for "transformer", the MNIST-1D signals as they are (no server-side normalisation)."""
    return _local_heldout(name, generate_pixels)
