"""The SALIENCY value that flows between nodes."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import ConceptAttentionError


@dataclass
class SaliencyMaps:
    """Per-concept saliency maps for a batch of images.

    maps:        float32 [B, r, h, w] on the CPU, on the model's token grid (h×w patches).
    names:       the r concept names, in map order.
    image_size:  (H, W) of the pictures in pixels (latent size × the VAE's downscale).
    softmax:     True when each token's values sum to 1 over concepts.
    metadata:    how the maps were made (space, layers, noise level, steps, model family, ...).
    """

    maps: torch.Tensor
    names: list[str]
    image_size: tuple[int, int]
    softmax: bool = True
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.maps.ndim != 4:
            raise ConceptAttentionError(f"saliency maps must be [batch, concepts, h, w], got shape {tuple(self.maps.shape)}")
        if self.maps.shape[1] != len(self.names):
            raise ConceptAttentionError(f"{self.maps.shape[1]} maps but {len(self.names)} concept names")

    @property
    def batch_size(self) -> int:
        return self.maps.shape[0]

    @property
    def grid(self) -> tuple[int, int]:
        return (self.maps.shape[2], self.maps.shape[3])

    def index_of(self, name: str) -> int:
        """Position of a concept, matched case-insensitively; a clear error names the choices."""
        wanted = name.strip().casefold()
        for i, n in enumerate(self.names):
            if n.casefold() == wanted:
                return i
        raise ConceptAttentionError(f"concept {name.strip()!r} is not in these saliency maps; available: {', '.join(self.names)}")
