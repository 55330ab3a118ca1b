"""The SALIENCY value that flows between nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import ConceptAttentionError


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

    @property
    def batch_size(self) -> int:
        return self.maps.shape[0]

    @property
    def is_video(self) -> bool:
        return self.maps.ndim == 5

    @property
    def token_frames(self) -> int:
        """Map frames per clip (1 for pictures)."""
        return self.maps.shape[2] if self.is_video else 1

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of one map frame."""
        return (self.maps.shape[-2], self.maps.shape[-1])

    def index_of(self, name: str) -> int:
        """Position of a concept, matched case-insensitively; a clear error names the choices."""
        wanted = name.strip().casefold()
        for i, n in enumerate(self.names):
            if n.casefold() == wanted:
                return i
        raise ConceptAttentionError(f"concept {name.strip()!r} is not in these saliency maps; available: {', '.join(self.names)}")
