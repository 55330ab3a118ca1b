"""A synthetic world whose truth is known: small pictures of one to three coloured shapes on plain, gradient or
noisy backgrounds, each with its caption and an exact pixel mask per object word.

Shapes are filled without anti-aliasing, each in one flat colour; a pixel belongs to a shape when its centre lies
inside it. Objects are painted in caption order, so a later object covers an earlier one, and each object's mask
is exactly the pixels that show its colour in the picture. Two objects of one colour never touch (their edge would
not show), and every object keeps at least half of its own area visible. Background colours are near-grey (their channels differ
by at most 42) and object colours are saturated (their channels differ by at least 150), so no background pixel
ever has an object's colour.

Folder format (write_dataset / read_dataset), also the format for a real dataset:

    NAME.png          the picture (RGB; any mode Pillow reads, converted to RGB)
    NAME.json         {"caption": "a red circle and a blue square on a dark background",
                       "concepts": ["red circle", "blue square"],
                       "masks": {"red circle": "NAME.mask.0.png", "blue square": "NAME.mask.1.png"},
                       "ignore": "NAME.ignore.png"}            (optional: pixels left out of every metric)
    NAME.mask.K.png   one mask per concept, the picture's size, 1-bit or 8-bit grey (a pixel is in the mask when
                      its value is above 127)

Masks of one picture must not overlap; every pixel outside the masks (and outside "ignore") is background.

Command line: python -m quality.synthetic_world --out FOLDER --count N --seed S --size 64
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")
COLOURS = {
    "red": (220, 40, 40),
    "green": (30, 180, 50),
    "blue": (40, 80, 230),
    "yellow": (235, 205, 30),
    "purple": (150, 50, 200),
    "orange": (245, 135, 20),
}
# Near-grey background tones (channels within 12 of each other): light, mid and dark.
BACKGROUND_TONES = (
    (236, 234, 228), (222, 226, 232), (205, 203, 196), (176, 178, 180), (128, 128, 126),
    (92, 90, 86), (62, 60, 55), (40, 42, 48), (28, 30, 34),
)
BACKGROUND_KINDS = ("plain", "gradient", "noise")
NOISE_LIMIT = 15  # the noise background's per-channel deviation, at most
MIN_VISIBLE = 0.5  # each object keeps at least this share of its own area visible
RADIUS = (0.11, 0.24)  # an object's half-size, as a share of the picture size


def vocabulary() -> list[str]:
    """Every object word of the world ("red circle", ..., "orange ring"): colour then shape."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


@dataclass
class Sample:
    """One picture with its truth.

    image:    uint8 [H, W, 3].
    caption:  the prompt that describes it ("a red circle and a blue square on a dark background").
    concepts: the object words in caption order.
    masks:    concept -> bool [H, W], exactly the visible pixels of that object; masks do not overlap.
    ignore:   bool [H, W] of pixels left out of every metric (real datasets' unlabelled borders), or None.
    name:     the file name stem in a dataset folder.
    objects:  what the generator drew (shape, colour, centre, radius), in painting order; empty for real data.
    """

    image: np.ndarray
    caption: str
    concepts: list[str]
    masks: dict[str, np.ndarray]
    ignore: np.ndarray | None = None
    name: str = ""
    objects: list[dict] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.image.shape[0]), int(self.image.shape[1]))

    @property
    def background(self) -> np.ndarray:
        """bool [H, W]: the pixels of no object (and not ignored)."""
        covered = np.zeros(self.size, dtype=bool)
        for mask in self.masks.values():
            covered |= mask
        if self.ignore is not None:
            covered |= self.ignore
        return ~covered

    def label_map(self) -> np.ndarray:
        """int64 [H, W]: 0 background, k + 1 for concept k (caption order), -1 ignored."""
        labels = np.zeros(self.size, dtype=np.int64)
        for k, concept in enumerate(self.concepts):
            labels[self.masks[concept]] = k + 1
        if self.ignore is not None:
            labels[self.ignore] = -1
        return labels


def caption_for(concepts: list[str], tone: str = "") -> str:
    """'a red circle', 'a red circle and an orange star', 'a red circle, a blue square and a green cross'; with a
    background tone, ' on a dark background' after them (so "background" is a word the captions teach)."""
    named = [f"{'an' if word[0] in 'aeiou' else 'a'} {word}" for word in concepts]
    objects = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    return f"{objects} on a {tone} background" if tone else objects


def tone_name(tone) -> str:
    """'light', 'grey' or 'dark': how a caption names a background tone (by its mean channel value)."""
    mean = sum(tone) / 3
    return "light" if mean >= 170 else "dark" if mean < 85 else "grey"


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """bool [size, size]: the pixels whose centre lies inside `shape` centred at (cx, cy) with half-size r."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        side = 0.85 * r
        return (np.abs(dx) <= side) & (np.abs(dy) <= side)
    if shape == "cross":
        arm = 0.32 * r
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "triangle":
        points = [(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)]
        return _polygon(points, xs, ys)
    if shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        points = list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))
        return _polygon(points, xs, ys)
    raise ValueError(f"unknown shape {shape!r}; the shapes are {', '.join(SHAPES)}")


def _grown(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (8-neighbourhood)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    grown = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            grown |= padded[dy:dy + h, dx:dx + w]
    return grown


def _polygon(points, xs, ys) -> np.ndarray:
    """Even-odd rule: a pixel centre is inside when a ray to its right crosses the edges an odd number of times."""
    inside = np.zeros(xs.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1]):
        if y1 == y2:
            continue
        crosses = (y1 > ys) != (y2 > ys)
        x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_at)
    return inside


def make_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str, str]:
    """(uint8 [size, size, 3] near-grey background, its kind: plain, a gentle gradient, or mild noise, its tone's
    name: light, grey or dark)."""
    kind = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    tone = np.array(BACKGROUND_TONES[int(rng.integers(len(BACKGROUND_TONES)))], dtype=np.float64)
    if kind == "plain":
        picture = np.broadcast_to(tone, (size, size, 3)).copy()
    elif kind == "gradient":
        # toward a neighbouring tone, along a random direction
        index = BACKGROUND_TONES.index(tuple(int(v) for v in tone))
        other = np.array(BACKGROUND_TONES[min(len(BACKGROUND_TONES) - 1, index + 1) if index == 0
                                          else index - 1], dtype=np.float64)
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) / max(1, size - 1)
        t = (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle)
        t = (t - t.min()) / max(1e-9, t.max() - t.min())
        picture = tone + t[..., None] * (other - tone)
    else:
        noise = np.clip(rng.normal(0.0, 6.0, (size, size, 3)), -NOISE_LIMIT, NOISE_LIMIT)
        picture = tone + noise
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8), kind, tone_name(tone)


def make_sample(rng: np.random.Generator, size: int = 64, n_objects: int = 1, name: str = "") -> Sample:
    """One picture of `n_objects` (1 to 3) distinct object words on a random background, with exact masks."""
    if not 1 <= n_objects <= 3:
        raise ValueError(f"n_objects must be 1, 2 or 3, got {n_objects}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    background, _, tone = make_background(rng, size)
    words = vocabulary()
    chosen = [words[i] for i in rng.choice(len(words), size=n_objects, replace=False)]
    for _ in range(200):
        layout = []
        for word in chosen:
            r = rng.uniform(*RADIUS) * size
            cx, cy = rng.uniform(r, size - r, size=2)
            layout.append({"word": word, "shape": word.split(" ")[1], "colour": word.split(" ")[0],
                           "center": [float(cx), float(cy)], "radius": float(r)})
        full = [shape_mask(o["shape"], size, *o["center"], o["radius"]) for o in layout]
        visible = []
        for k, mask in enumerate(full):
            covered = np.zeros_like(mask)
            for later in full[k + 1:]:
                covered |= later
            visible.append(mask & ~covered)
        min_pixels = max(4, int(0.004 * size * size))
        if all(v.sum() >= max(min_pixels, MIN_VISIBLE * f.sum()) for v, f in zip(visible, full)) and not any(
                a["colour"] == b["colour"] and (_grown(fa) & fb).any()
                for i, (a, fa) in enumerate(zip(layout, full)) for b, fb in zip(layout[i + 1:], full[i + 1:])):
            break
    else:  # pragma: no cover - three objects of at most a quarter of the picture always fit
        raise RuntimeError("no layout found where every object stays visible")
    picture = background.copy()
    for o, mask in zip(layout, full):
        picture[mask] = COLOURS[o["colour"]]
    return Sample(image=picture, caption=caption_for(chosen, tone), concepts=list(chosen),
                  masks={word: v for word, v in zip(chosen, visible)}, name=name, objects=layout)


def make_dataset(seed: int, count: int, size: int = 64, objects: tuple[int, int] = (1, 3),
                 first: int = 0) -> list[Sample]:
    """`count` samples from index `first` on; sample i draws from its own generator seeded (seed, i), so a longer
    dataset of the same seed starts with the same pictures (and chunks made apart join into the same dataset).
    Each holds between objects[0] and objects[1] objects (inclusive)."""
    low, high = objects
    samples = []
    for i in range(first, first + count):
        rng = np.random.default_rng([seed, i])
        n = int(rng.integers(low, high + 1))
        samples.append(make_sample(rng, size, n, name=f"sample_{i:05d}"))
    return samples


def write_dataset(folder, samples: list[Sample]) -> Path:
    """Write samples in the folder format (module docstring); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(samples):
        name = sample.name or f"sample_{i:05d}"
        Image.fromarray(sample.image, "RGB").save(folder / f"{name}.png")
        files = {}
        for k, concept in enumerate(sample.concepts):
            files[concept] = f"{name}.mask.{k}.png"
            Image.fromarray(sample.masks[concept]).save(folder / files[concept])  # bool -> 1-bit PNG
        record = {"caption": sample.caption, "concepts": list(sample.concepts), "masks": files}
        if sample.ignore is not None:
            record["ignore"] = f"{name}.ignore.png"
            Image.fromarray(sample.ignore).save(folder / record["ignore"])
        if sample.objects:
            record["objects"] = sample.objects
        (folder / f"{name}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return folder


def _read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(Image.open(path).convert("L")) > 127
    if mask.shape != size:
        raise ValueError(f"{path.name} is {mask.shape[1]}x{mask.shape[0]} but its picture is {size[1]}x{size[0]}")
    return mask


def read_dataset(folder) -> list[Sample]:
    """The samples of a folder in the folder format, in file-name order (every NAME.json with its NAME.png)."""
    folder = Path(folder)
    samples = []
    for meta in sorted(folder.glob("*.json")):
        name = meta.name[: -len(".json")]
        record = json.loads(meta.read_text(encoding="utf-8"))
        image = np.asarray(Image.open(folder / f"{name}.png").convert("RGB")).copy()
        size = (int(image.shape[0]), int(image.shape[1]))
        concepts = list(record["concepts"])
        missing = [c for c in concepts if c not in record.get("masks", {})]
        if missing or len(set(concepts)) != len(concepts):
            raise ValueError(f"{meta.name}: every concept needs one mask and concepts must be unique ({missing})")
        masks = {c: _read_mask(folder / record["masks"][c], size) for c in concepts}
        total = np.zeros(size, dtype=np.int64)
        for mask in masks.values():
            total += mask
        if (total > 1).any():
            raise ValueError(f"{meta.name}: the masks overlap at {int((total > 1).sum())} pixels; give each pixel "
                             "to one concept (or to 'ignore')")
        ignore = _read_mask(folder / record["ignore"], size) if record.get("ignore") else None
        samples.append(Sample(image=image, caption=record.get("caption", ""), concepts=concepts, masks=masks,
                              ignore=ignore, name=name, objects=record.get("objects", [])))
    if not samples:
        raise ValueError(f"{folder} holds no dataset: expected NAME.png + NAME.json pairs (docs/quality.md)")
    return samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m quality.synthetic_world", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the pictures, masks and captions to")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="picture side in pixels")
    parser.add_argument("--min-objects", type=int, default=1)
    parser.add_argument("--max-objects", type=int, default=3)
    args = parser.parse_args(argv)
    samples = make_dataset(args.seed, args.count, args.size, (args.min_objects, args.max_objects))
    folder = write_dataset(args.out, samples)
    print(f"wrote {len(samples)} samples of {args.size}x{args.size} to {folder}")


if __name__ == "__main__":
    main()
