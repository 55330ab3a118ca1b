"""The paper's segmentation metrics (ConceptAttention, Section 5.2, Tables 1-2), as its authors' evaluation code
computes them, in numpy.

Maps come on the model's token grid; each is upsampled to the mask's size (`upsample`: nearest neighbour as the
authors' code does, or bilinear) before anything is compared.

Single object (Table 1, SingleObjectMetrics): a picture with one object and a concept list of that object plus
background words.
- The object's map is min-max normalised to [0, 1] (authors' ImageNet-Segmentation code) and upsampled.
- Binary prediction, threshold="mean" (the paper's text, the authors' ImageNet code): foreground where the map is
  above its mean. threshold="argmax" (the authors' PascalVOC single-class code): foreground where the object's
  map is the largest of all concepts' maps.
- Pixel accuracy: correct pixels / labelled pixels, summed over the dataset (global, as the authors accumulate).
- mIoU: IoU of the two classes (background, foreground), each from intersections and unions summed over the
  dataset, then their mean (the authors' PascalVOC code; their ImageNet script passes two stacked channels to the
  same IoU function, which makes its "mIoU" equal accuracy / (2 - accuracy): not reproduced here).
- mAP: per picture, the average precision of two score channels against two label channels flattened together
  (1 - map against the background, map against the foreground; the authors' get_ap_scores with sklearn's
  step-wise average_precision_score); then the mean over pictures.

Multi object (Table 2, MultiObjectMetrics): each pixel takes the concept whose map is largest there. A concept
that is one of the picture's objects predicts that object; any other concept (background words) predicts
background. Classes are the object words and "background".
- Pixel accuracy: correct pixels / labelled pixels, summed over the dataset.
- mIoU: per class, intersection and union summed over the dataset; the mean over classes whose union is not empty
  (the authors' PascalVOC multi-class code, with object words in place of PascalVOC's 20 classes).

Pixels marked `ignore` count nowhere (the authors leave PascalVOC's unlabelled borders out of the accuracy).
"""

from __future__ import annotations

import numpy as np

UPSAMPLE_MODES = ("nearest", "bilinear")
THRESHOLDS = ("mean", "argmax")
BACKGROUND = "background"


def _axis_weights(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """float64 [n_out, n_in]: how each output row reads the input rows (torch's interpolate, align_corners=False)."""
    weights = np.zeros((n_out, n_in))
    dst = np.arange(n_out)
    if mode == "nearest":
        weights[dst, np.minimum((dst * n_in) // n_out, n_in - 1)] = 1.0
        return weights
    src = np.maximum((dst + 0.5) * n_in / n_out - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(int), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    np.add.at(weights, (dst, low), 1.0 - frac)
    np.add.at(weights, (dst, high), frac)
    return weights


def upsample(score_map: np.ndarray, size: tuple[int, int], mode: str = "nearest") -> np.ndarray:
    """float64 [..., H, W]: maps [..., h, w] resized to `size` = (H, W), as torch.nn.functional.interpolate does
    with mode "nearest" or "bilinear" (align_corners=False)."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample mode {mode!r} is not one of {', '.join(UPSAMPLE_MODES)}")
    score_map = np.asarray(score_map, dtype=np.float64)
    rows = _axis_weights(score_map.shape[-2], size[0], mode)
    cols = _axis_weights(score_map.shape[-1], size[1], mode)
    return np.einsum("Hh,...hw,Ww->...HW", rows, score_map, cols)


def normalize_min_max(score_map: np.ndarray) -> np.ndarray:
    """The map shifted and scaled to [0, 1]; a constant map becomes all zeros."""
    score_map = np.asarray(score_map, dtype=np.float64)
    low, high = score_map.min(), score_map.max()
    return (score_map - low) / (high - low) if high > low else np.zeros_like(score_map)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision as sklearn's average_precision_score computes it: sum over the distinct score thresholds,
    highest first, of (recall gained) x (precision there); no interpolation. 0 when there is no positive."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    positives = int(labels.sum())
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], labels[order].astype(np.float64)
    last_of_ties = np.r_[np.nonzero(np.diff(ordered))[0], ordered.size - 1]
    tps = np.cumsum(hits)[last_of_ties]
    precision = tps / (last_of_ties + 1)
    recall = tps / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def two_class_average_precision(scores01: np.ndarray, foreground: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The authors' per-picture AP: channels (1 - s, s) against (background, foreground), flattened together."""
    if valid is None:
        valid = np.ones(foreground.shape, dtype=bool)
    s, fg = scores01[valid], foreground[valid]
    return average_precision(np.r_[1.0 - s, s], np.r_[~fg, fg])


def _valid(shape, ignore) -> np.ndarray:
    return np.ones(shape, dtype=bool) if ignore is None else ~np.asarray(ignore, dtype=bool)


class SingleObjectMetrics:
    """Pixel accuracy, mIoU and mAP of one object against background, accumulated over pictures (module docstring).

    add(maps, target, mask, ignore=None): maps float [r, h, w] (every concept's map on the token grid) or [h, w]
    (the object's map alone; threshold "mean" only), target the object's index among the r maps, mask bool [H, W]
    of the object's pixels. Returns the picture's own record; result() gives the dataset's metrics.
    """

    def __init__(self, threshold: str = "mean", upsample_mode: str = "nearest"):
        if threshold not in THRESHOLDS:
            raise ValueError(f"threshold {threshold!r} is not one of {', '.join(THRESHOLDS)}")
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample mode {upsample_mode!r} is not one of {', '.join(UPSAMPLE_MODES)}")
        self.threshold, self.upsample_mode = threshold, upsample_mode
        self.correct = self.labelled = 0
        self.intersection = np.zeros(2, dtype=np.int64)  # background, foreground
        self.union = np.zeros(2, dtype=np.int64)
        self.ap: list[float] = []

    def add(self, maps: np.ndarray, target: int, mask: np.ndarray, ignore: np.ndarray | None = None) -> dict:
        maps = np.asarray(maps, dtype=np.float64)
        if maps.ndim == 2:
            if self.threshold == "argmax":
                raise ValueError("threshold 'argmax' needs every concept's map: pass maps [concepts, h, w]")
            maps, target = maps[None], 0
        mask = np.asarray(mask, dtype=bool)
        valid = _valid(mask.shape, ignore)
        scores = upsample(normalize_min_max(maps[target]), mask.shape, self.upsample_mode)
        if self.threshold == "mean":
            predicted = scores > scores.mean()
        else:
            predicted = upsample(maps, mask.shape, self.upsample_mode).argmax(axis=0) == target
        correct = int(((predicted == mask) & valid).sum())
        labelled = int(valid.sum())
        inter = np.array([((~predicted) & (~mask) & valid).sum(), (predicted & mask & valid).sum()], dtype=np.int64)
        union = np.array([((~predicted | ~mask) & valid).sum(), ((predicted | mask) & valid).sum()], dtype=np.int64)
        ap = two_class_average_precision(scores, mask, valid)
        self.correct += correct
        self.labelled += labelled
        self.intersection += inter
        self.union += union
        self.ap.append(ap)
        iou = [float(i / u) if u else 1.0 for i, u in zip(inter, union)]
        return {"pixel_accuracy": correct / max(1, labelled), "iou_background": iou[0], "iou_foreground": iou[1],
                "miou": float(np.mean(iou)), "ap": ap}

    def result(self) -> dict:
        """{"pixel_accuracy", "miou", "map", "iou_background", "iou_foreground", "images"} over every picture added
        (None for each metric when none was)."""
        if not self.ap:
            return {"pixel_accuracy": None, "miou": None, "map": None, "iou_background": None,
                    "iou_foreground": None, "images": 0}
        iou = [float(i / u) if u else 1.0 for i, u in zip(self.intersection, self.union)]
        return {"pixel_accuracy": self.correct / max(1, self.labelled), "miou": float(np.mean(iou)),
                "map": float(np.mean(self.ap)), "iou_background": iou[0], "iou_foreground": iou[1],
                "images": len(self.ap)}


class MultiObjectMetrics:
    """Pixel accuracy and mIoU of the per-pixel argmax over concepts, accumulated over pictures (module docstring).

    add(maps, names, masks, ignore=None): maps float [r, h, w] on the token grid, names the r concept names in map
    order, masks {object word: bool [H, W]} of the picture's objects (each must be among names). Returns the
    picture's own record; result() gives the dataset's metrics.
    """

    def __init__(self, upsample_mode: str = "nearest"):
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample mode {upsample_mode!r} is not one of {', '.join(UPSAMPLE_MODES)}")
        self.upsample_mode = upsample_mode
        self.correct = self.labelled = self.images = 0
        self.intersection: dict[str, int] = {}
        self.union: dict[str, int] = {}

    def add(self, maps: np.ndarray, names: list[str], masks: dict[str, np.ndarray],
            ignore: np.ndarray | None = None) -> dict:
        maps = np.asarray(maps, dtype=np.float64)
        if maps.ndim != 3 or maps.shape[0] != len(names):
            raise ValueError(f"maps must be [{len(names)}, h, w] for {len(names)} names, got {maps.shape}")
        absent = [word for word in masks if word not in names]
        if absent:
            raise ValueError(f"objects {absent} have no map among the concepts {names}")
        size = next(iter(masks.values())).shape
        classes = [BACKGROUND, *masks]
        # class index per concept: its object's class, or background for every other word
        concept_class = np.array([classes.index(n) if n in masks else 0 for n in names])
        predicted = concept_class[upsample(maps, size, self.upsample_mode).argmax(axis=0)]
        truth = np.zeros(size, dtype=np.int64)
        for k, word in enumerate(masks, start=1):
            truth[np.asarray(masks[word], dtype=bool)] = k
        valid = _valid(size, ignore)
        correct, labelled = int(((predicted == truth) & valid).sum()), int(valid.sum())
        self.correct += correct
        self.labelled += labelled
        self.images += 1
        own = []
        for k, cls in enumerate(classes):
            inter = int(((predicted == k) & (truth == k) & valid).sum())
            union = int((((predicted == k) | (truth == k)) & valid).sum())
            self.intersection[cls] = self.intersection.get(cls, 0) + inter
            self.union[cls] = self.union.get(cls, 0) + union
            if union:
                own.append(inter / union)
        return {"pixel_accuracy": correct / max(1, labelled), "miou": float(np.mean(own)) if own else None}

    def class_iou(self) -> dict[str, float]:
        """IoU per class over the dataset so far, for classes with a non-empty union."""
        return {c: self.intersection[c] / u for c, u in sorted(self.union.items()) if u}

    def result(self) -> dict:
        """{"pixel_accuracy", "miou", "class_iou", "images"} over every picture added (None when none was)."""
        ious = self.class_iou()
        return {"pixel_accuracy": self.correct / self.labelled if self.labelled else None,
                "miou": float(np.mean(list(ious.values()))) if ious else None, "class_iou": ious,
                "images": self.images}
