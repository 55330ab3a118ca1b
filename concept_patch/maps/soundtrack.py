"""The soundtrack of a SALIENCY: each concept's share of the target audio, per audio latent frame.

A family whose model generates audio with the video (MiniMax H3) scores the concepts against the audio tokens too
(ModelFamily.side_metadata) and leaves the result in the SALIENCY metadata:

    SHARES_KEY  ("audio_shares")  [clip][concept][audio frame] numbers (JSON lists, so Save/Load keep them)
    FRAMES_KEY  ("audio_frames")  audio latent frames per clip
    RATE_KEY    ("audio_frame_rate")  audio latent frames per second, where the family knows it

Nothing here names a family: any family writing these keys gets the preview's soundtrack strip
(soundtrack_band.py) and the Concept Soundtrack Curve node. What the numbers mean: with softmax on, for each audio
frame a softmax over the concepts of how strongly the audio tokens of that frame match each concept, in the model's
own attention space (the same score as a video token's map, only for audio tokens); they sum to 1 over the
concepts at every frame, so they are shares among the concepts given, not a loudness, not a source separation and
not a probability that the concept is audible (see docs/soundtrack.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..checks.errors import ConceptAttentionError
from .saliency_maps import SaliencyMaps

SHARES_KEY = "audio_shares"
FRAMES_KEY = "audio_frames"
RATE_KEY = "audio_frame_rate"
# What a SALIENCY (made here, or loaded from a crafted file) may claim: 2 hours of audio at 40 frames a second,
# and a bounded number of values in all (the concepts and clips are bounded by the maps already).
MAX_AUDIO_FRAMES = 288_000
MAX_SHARE_VALUES = 4_000_000
SHARE_TOLERANCE = 1e-3
CURVE_MODES = ("share", "threshold", "winner")


@dataclass(frozen=True)
class Soundtrack:
    """shares: float32 [clips, concepts, audio frames]; probabilities: softmax shares (0-1, summing to 1 over the
    concepts); frame_rate: audio frames per second, or None where the SALIENCY does not say."""

    shares: torch.Tensor
    probabilities: bool
    frame_rate: float | None = None

    @property
    def frames(self) -> int:
        return self.shares.shape[-1]

    def unit(self) -> torch.Tensor:
        """The shares on a 0-1 scale: themselves for softmax shares, else placed between the smallest and the
        largest score of every concept and clip together (as ColorScale places raw maps)."""
        if self.probabilities:
            return self.shares.clamp(0.0, 1.0)
        lo, hi = float(self.shares.min()), float(self.shares.max())
        if hi <= lo:
            return torch.zeros_like(self.shares)
        return (self.shares - lo) / (hi - lo)

    def winners(self) -> torch.Tensor:
        """The concept with the largest share at each audio frame: long [clips, frames]."""
        return self.shares.argmax(dim=1)


def _refuse(what: str) -> ConceptAttentionError:
    return ConceptAttentionError(f"this SALIENCY's soundtrack ('{SHARES_KEY}' in its metadata) {what}")


def _rate(metadata: dict) -> float | None:
    rate = metadata.get(RATE_KEY)
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and 0 < rate <= 10_000:
        return float(rate)
    return None


def soundtrack_of(saliency: SaliencyMaps) -> Soundtrack | None:
    """The SALIENCY's soundtrack, checked against its maps; None when it has none. A malformed one (a crafted or
    edited file) is refused naming what is wrong, never half read."""
    metadata = saliency.metadata if isinstance(saliency.metadata, dict) else {}
    raw = metadata.get(SHARES_KEY)
    if raw is None:
        return None
    clips, concepts = saliency.batch_size, len(saliency.names)
    if not isinstance(raw, list) or len(raw) != clips:
        raise _refuse(f"must be a list of {clips} clip(s), one per clip of the maps")
    frames = None
    for clip in raw:
        if not isinstance(clip, list) or len(clip) != concepts:
            raise _refuse(f"must hold, for every clip, one list per concept ({concepts})")
        for row in clip:
            if not isinstance(row, list) or not row or (frames is not None and len(row) != frames):
                raise _refuse("must give every concept of every clip the same number of audio frames (at least 1)")
            frames = len(row)
    if frames > MAX_AUDIO_FRAMES or clips * concepts * frames > MAX_SHARE_VALUES:
        raise _refuse(f"claims {frames} audio frames for {concepts} concepts; at most {MAX_AUDIO_FRAMES} frames and "
                      f"{MAX_SHARE_VALUES:,} values in all are read")
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for clip in raw for row in clip for v in row):
        raise _refuse("holds something other than numbers")
    shares = torch.tensor(raw, dtype=torch.float32)
    if not torch.isfinite(shares).all():
        raise _refuse("holds NaN or infinite values")
    if saliency.softmax and (float(shares.min()) < -SHARE_TOLERANCE or float(shares.max()) > 1 + SHARE_TOLERANCE):
        raise _refuse("holds values outside 0-1 although the maps are softmax shares")
    return Soundtrack(shares, bool(saliency.softmax), _rate(metadata))


def require_soundtrack(saliency: SaliencyMaps, makers: str = "") -> Soundtrack:
    """The soundtrack, or a clear error saying which runs have one (makers: the families that make one, by name)."""
    soundtrack = soundtrack_of(saliency)
    if soundtrack is None:
        family = saliency.metadata.get("model_family") if isinstance(saliency.metadata, dict) else None
        made_by = f" (these maps come from {str(family)[:60]})" if family else ""
        which = f" ({makers})" if makers else ""
        raise ConceptAttentionError(
            f"this SALIENCY has no soundtrack{made_by}: only a model that generates audio with its video{which} "
            "scores the concepts along the audio. Use the SALIENCY of such a run (Concept Saliency on its "
            "audio-video latent, or Concept Saliency from Sampling after it), or Load Saliency of a file saved "
            "from one"
        )
    return soundtrack


def concept_curve(saliency: SaliencyMaps, concept: str, mode: str = "share", threshold: float = 0.5,
                  invert: bool = False, makers: str = "") -> torch.Tensor:
    """One concept's soundtrack curve [clips, audio frames], 0-1 float32:

    share:      its share at every audio frame (Soundtrack.unit: the softmax share itself, with softmax on);
    threshold:  1 where that share is at least `threshold`, else 0;
    winner:     1 where the concept has the largest share of all concepts, else 0;
    invert:     1 - the curve (everything but the concept).
    """
    if mode not in CURVE_MODES:
        raise ConceptAttentionError(f"unknown curve mode {mode!r}; use one of {', '.join(CURVE_MODES)}")
    if not math.isfinite(threshold):
        raise ConceptAttentionError(f"threshold must be a finite number, got {threshold}")
    soundtrack = require_soundtrack(saliency, makers)
    index = saliency.index_of(concept)
    if mode == "winner":
        curve = (soundtrack.winners() == index).float()
    else:
        curve = soundtrack.unit()[:, index]
        if mode == "threshold":
            curve = (curve >= threshold).float()
    return 1.0 - curve if invert else curve


def curve_table(curve: torch.Tensor, name: str, frame_rate: float | None) -> str:
    """The curve as CSV text: one row per audio frame, its start time in seconds where the rate is known."""
    head = ("clip," if curve.shape[0] > 1 else "") + ("time_s" if frame_rate else "audio_frame") + f",{name}"
    rows = [head]
    for clip, values in enumerate(curve.tolist()):
        for frame, value in enumerate(values):
            at = f"{frame / frame_rate:.4f}" if frame_rate else str(frame)
            rows.append(("" if curve.shape[0] == 1 else f"{clip + 1},") + f"{at},{value:.6g}")
    return "\n".join(rows)


def curve_of_mask(mask: torch.Tensor) -> torch.Tensor:
    """A time curve [batch, n] from a MASK: [n], [batch, n] or [batch, rows, n] (rows averaged): the last axis
    is time, spread evenly over the audio's length."""
    if not torch.is_tensor(mask) or mask.ndim not in (1, 2, 3) or mask.shape[-1] < 1 or mask.numel() == 0:
        shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise ConceptAttentionError(
            f"the curve must be a MASK [batch, 1, frames] as Concept Soundtrack Curve makes (time on the last "
            f"axis); got {shape}")
    curve = mask.detach().float().cpu()
    curve = curve.reshape(1, -1) if curve.ndim == 1 else curve
    curve = curve.mean(dim=1) if curve.ndim == 3 else curve
    if not torch.isfinite(curve).all():
        raise ConceptAttentionError("the curve holds NaN or infinite values")
    return curve.clamp(0.0, 1.0)


def gain_envelope(curve: torch.Tensor, samples: int) -> torch.Tensor:
    """The curve [batch, n] as a gain per audio sample [batch, 1, samples]: audio frame k covers the k-th n-th of
    the audio, its value sits at that span's middle, linear in between (flat before the first middle and after
    the last)."""
    return torch.nn.functional.interpolate(curve[:, None], size=samples, mode="linear", align_corners=False)


def gate_audio(audio: dict, curve: torch.Tensor, floor: float = 0.0) -> dict:
    """An AUDIO ({"waveform": [batch, channels, samples], "sample_rate"}) whose loudness follows the curve: each
    sample times floor + (1 - floor) · curve there (1 keeps it, 0 leaves `floor` of it)."""
    waveform = audio.get("waveform") if isinstance(audio, dict) else None
    if not torch.is_tensor(waveform) or waveform.ndim != 3 or waveform.shape[-1] < 1:
        raise ConceptAttentionError("the audio must be an AUDIO with a waveform [batch, channels, samples] (as VAE "
                                    "Decode Audio or Load Audio give)")
    if not (0.0 <= floor <= 1.0):
        raise ConceptAttentionError(f"floor must lie in 0-1, got {floor}")
    batch = waveform.shape[0]
    if curve.shape[0] not in (1, batch):
        raise ConceptAttentionError(f"the curve has {curve.shape[0]} clips but the audio {batch}; give one curve "
                                    "for all of them or one per clip")
    gain = gain_envelope(curve, waveform.shape[-1]).to(device=waveform.device, dtype=waveform.dtype)
    gain = floor + (1.0 - floor) * gain
    return {**audio, "waveform": waveform * gain}
