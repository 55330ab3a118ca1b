"""One sampling run (a guider's sample call): accumulates maps over its model calls."""

from __future__ import annotations

import torch

from .forward_state import ForwardState


def _step_sigma_bounds(sigmas: list[float], start: float, end: float) -> tuple[float, float] | None:
    """Sigma range of the steps i with start <= i/steps < end; None means every step counts."""
    steps = len(sigmas) - 1
    if steps < 1 or (start <= 0.0 and end >= 1.0):
        return None
    chosen = [sigmas[i] for i in range(steps) if start <= i / steps < end]
    if not chosen:
        # A range narrower than one step still takes the step it falls in.
        chosen = [sigmas[min(int(start * steps), steps - 1)]]
    return (min(chosen), max(chosen))


class SamplingRun:
    """Maps of one run, summed on the device in fp32 and divided once at the end."""

    def __init__(self, session, latent_shape, sigmas, stream_shapes=None):
        self.session = session
        # A packed multi-stream latent (ComfyUI's latent_shapes, e.g. MiniMax H3's [video, audio]): the model is
        # called on the flat pack [B, 1, n], and the maps are of the first stream, whose shape the rest reads.
        self.packed_shape = tuple(latent_shape) if stream_shapes and len(stream_shapes) > 1 else None
        if self.packed_shape is not None:
            latent_shape = tuple(stream_shapes[0])
        self.batch_size = latent_shape[0]
        self.latent_hw = tuple(latent_shape[-2:])
        # Latent frames of a video latent [B, C, T, h, w] (1 for pictures, also Qwen-Image's [B, C, 1, h, w]).
        self.latent_frames = latent_shape[2] if len(latent_shape) == 5 else 1
        # Read once before the loop; inside it the step test runs on the device.
        sigma_list = [] if sigmas is None else [float(s) for s in torch.as_tensor(sigmas).flatten().cpu().tolist()]
        self.sigma_bounds = _step_sigma_bounds(sigma_list, session.options.start_percent, session.options.end_percent)
        self.grid: tuple[int, ...] | None = None
        self.total: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.side_totals: dict = {}  # side token group -> summed scores [B, n, r] (StreamKind.side_tokens)
        self.forwards_seen = 0
        self.forwards_used = 0
        self.latent_shape = tuple(latent_shape)
        self.recorded: list = []  # RecordedForward of each forward used, when the session keeps image streams

    def begin_forward(self, diffusion_model, x, sigma, transformer_options, dtype) -> ForwardState | None:
        """A ForwardState for a full-frame call with conditional rows, else None (call runs untouched)."""
        if self.packed_shape is not None:
            if tuple(x.shape[1:]) != self.packed_shape[1:]:
                return None  # not the whole pack
        elif tuple(x.shape[-2:]) != self.latent_hw or (x.ndim == 5 and x.shape[2] != self.latent_frames):
            return None  # an area-conditioning crop: not the whole picture
        chunks = transformer_options.get("cond_or_uncond") or [0]
        if x.shape[0] % len(chunks) or x.shape[0] // len(chunks) != self.batch_size:
            return None
        cond_ranges = [(j * self.batch_size, (j + 1) * self.batch_size) for j, kind in enumerate(chunks) if kind == 0]
        if not cond_ranges:
            return None
        grid = self.token_grid(diffusion_model)
        self.grid = grid
        return ForwardState(self, diffusion_model, cond_ranges, grid, dtype, x.device, self._step_weight(sigma))

    def token_grid(self, diffusion_model) -> tuple[int, ...]:
        """(h, w) of the picture's tokens, or (frames, h, w) where the family gives video maps a time axis."""
        family = self.session.family
        grid = tuple(family.token_grid(diffusion_model, self.latent_hw))
        frames = family.token_frames(diffusion_model, self.latent_frames)
        return grid if frames is None else (frames, *grid)

    def begin_recorded_forward(self, diffusion_model, recorded, device) -> ForwardState:
        """A ForwardState that re-queries a recorded forward (no model call)."""
        self.grid = recorded.grid
        forward = ForwardState(self, diffusion_model, recorded.cond_ranges, recorded.grid, recorded.dtype, device, None)
        forward.family_state.update(recorded.family_state)
        return forward

    def _step_weight(self, sigma):
        if self.sigma_bounds is None or sigma is None:
            return None
        lo, hi = self.sigma_bounds
        s = sigma.reshape(-1)[0].float()
        tol = 1e-5 * max(abs(hi), 1.0)
        return ((s >= lo - tol) & (s <= hi + tol)).float()

    def commit(self, fwd: ForwardState):
        """Add a finished forward's maps: per image, summed over its conditional chunks and layers."""
        self.forwards_seen += 1
        if not fwd.has_all_layers or fwd.layer_sum is None:
            return
        self.forwards_used += 1
        recorded = fwd.recorder.finish(fwd, self.latent_shape) if fwd.recorder is not None else None
        if recorded is not None:
            self.recorded.append(recorded)
        chunks = len(fwd.cond_ranges)
        per_image = fwd.layer_sum.reshape(chunks, self.batch_size, *fwd.layer_sum.shape[1:]).sum(0)
        count = float(chunks * fwd.layers_read)
        if fwd.step_weight is not None:
            per_image = per_image * fwd.step_weight
            count = fwd.step_weight * count
        if self.total is None:
            self.total = torch.zeros_like(per_image)
            self.weight = torch.zeros((), dtype=torch.float32, device=per_image.device)
        self.total += per_image
        self.weight += count
        for name, scores in fwd.side_sums.items():
            side = scores.reshape(chunks, self.batch_size, *scores.shape[1:]).sum(0)
            if fwd.step_weight is not None:
                side = side * fwd.step_weight
            self.side_totals[name] = side if name not in self.side_totals else self.side_totals[name] + side

    def averaged_side_scores(self) -> dict:
        """Side token group -> [B, n, r] float32 on the CPU, averaged as the maps are (empty when none)."""
        if self.total is None or float(self.weight) <= 0.0:
            return {}
        return {name: (total / self.weight).cpu() for name, total in self.side_totals.items()}

    def averaged_maps(self) -> torch.Tensor | None:
        """[B, r, h, w] (video: [B, r, frames, h, w]) float32 on the CPU, or None when no forward contributed."""
        if self.total is None or float(self.weight) <= 0.0:
            return None
        maps = (self.total / self.weight).cpu()
        axes = len(self.grid)
        maps = maps.reshape(self.batch_size, *self.grid, -1)
        return maps.permute(0, axes + 1, *range(1, axes + 1)).contiguous()
