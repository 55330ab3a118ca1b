"""The SALIENCY value that flows between nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..checks.errors import ConceptAttentionError
from ..checks.input_limits import check_output_pixels


@dataclass
class SaliencyMaps:
    """Per-concept saliency maps for a batch of images.

    maps:        float32 [B, r, h, w] on the CPU, on the model's token grid (h×w patches); for a video
                 [B, r, T, h, w], one map per token frame (T frames of the model's token grid).
    names:       the r concept names, in map order.
    image_size:  (H, W) of the pictures in pixels (latent size × the VAE's downscale).
    softmax:     True when each token's values sum to 1 over concepts.
    metadata:    how the maps were made (space, layers, noise level, steps, model family, ...).
    frames:      for a video, the number of pixel frames each clip decodes to (what a MASK batch per
                 clip must have); 0 for pictures.
    """

    maps: torch.Tensor
    names: list[str]
    image_size: tuple[int, int]
    softmax: bool = True
    metadata: dict = field(default_factory=dict)
    frames: int = 0

    def __post_init__(self):
        if self.maps.ndim not in (4, 5):
            raise ConceptAttentionError(
                f"saliency maps must be [batch, concepts, h, w] or, for a video, [batch, concepts, frames, h, w]; "
                f"got shape {tuple(self.maps.shape)}"
            )
        if self.maps.ndim == 5 and self.frames < self.maps.shape[2]:
            raise ConceptAttentionError(
                f"video saliency maps with {self.maps.shape[2]} token frames need at least as many pixel frames, "
                f"got {self.frames}"
            )
        if self.maps.shape[1] != len(self.names):
            raise ConceptAttentionError(f"{self.maps.shape[1]} maps but {len(self.names)} concept names")
        # whatever made the maps, what nodes make from them stays within one budget
        check_output_pixels(self.maps.shape[0], self.frames if self.maps.ndim == 5 else 0, self.image_size)

    @property
    def batch_size(self) -> int:
        return self.maps.shape[0]

    @property
    def is_video(self) -> bool:
        return self.maps.ndim == 5

    @property
    def clips(self) -> torch.Tensor:
        """The maps as clips [B, r, T, h, w], T = 1 for pictures (a view): one layout for every caller,
        so pictures and video go through the same code."""
        return self.maps if self.is_video else self.maps.unsqueeze(2)

    @property
    def token_frames(self) -> int:
        """Map frames per clip (1 for pictures)."""
        return self.maps.shape[2] if self.is_video else 1

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of one map frame."""
        return (self.maps.shape[-2], self.maps.shape[-1])

    @property
    def clip_frames(self) -> int:
        """Pixel frames per clip: `frames` for a video, 1 for pictures (a MASK has batch_size·clip_frames)."""
        return self.frames if self.is_video else 1

    def pixel_frame_sources(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where each pixel frame of a clip reads its maps: (token frame before, token frame after,
        weight of the later one), for linear interpolation in time. The first and last pixel frames sit
        exactly on the first and last token frames and the token frames are evenly spread between
        (token frame t at pixel frame t·(F-1)/(T-1)); for a causal video VAE that is latent frame t at
        pixel frame t·ratio. Pictures, and clips with one token frame, read frame 0 throughout."""
        frames, tokens = self.clip_frames, self.token_frames
        f = torch.arange(frames, dtype=torch.long)
        if tokens == 1 or frames == 1:
            zero = torch.zeros(frames, dtype=torch.long)
            return zero, zero.clone(), torch.zeros(frames, dtype=torch.float32)
        # exact rational positions: f·(T-1)/(F-1) = before + rest/(F-1)
        before = torch.div(f * (tokens - 1), frames - 1, rounding_mode="floor").clamp(max=tokens - 2)
        rest = f * (tokens - 1) - before * (frames - 1)
        return before, before + 1, (rest.double() / (frames - 1)).float()

    def index_of(self, name: str) -> int:
        """Position of a concept, matched case-insensitively; a clear error names the choices."""
        wanted = name.strip().casefold()
        for i, n in enumerate(self.names):
            if n.casefold() == wanted:
                return i
        raise ConceptAttentionError(f"concept {name.strip()!r} is not in these saliency maps; available: {', '.join(self.names)}")
