"""One SALIENCY over a sampling split between two models (Wan 2.2 14B's high-noise and low-noise experts).

The stock Wan 2.2 14B templates sample with two KSamplerAdvanced: the high-noise expert runs the first steps and
returns its latent with the noise left in it, the low-noise expert continues from that latent to the end. Each
patched expert records its own run (stream/session.py); a run records a digest of the latent it started from, so
the run that made the final latent is matched to the earlier run whose output it continued from, and their maps are
averaged over every model call of both (each run's mean weighted by the calls it used), as one run over the whole
sampling would average them.
"""

from __future__ import annotations

from ..checks.errors import ConceptAttentionError
from ..maps.saliency_maps import SaliencyMaps
from .session import latent_digest


def continued_record(final, sessions):
    """The newest run of these sessions whose output latent is the one `final` started from, or None."""
    if final.start is None:
        return None
    for session in reversed(sessions):
        for record in reversed(session.records):
            if record is not final and record.latent is not None and latent_digest(record.latent) == final.start:
                return record
    return None


def _check_same_concepts(first, final) -> None:
    a, b = first.session, final.session
    if list(a.concepts.names) != list(b.concepts.names):
        raise ConceptAttentionError(
            f"the two models were patched with different concepts ({', '.join(a.concepts.names)} and "
            f"{', '.join(b.concepts.names)}): patch both experts from one Concept List"
        )
    for choice in ("space", "softmax", "softmax_temperature", "softmax_after_mean"):
        if getattr(a.options, choice) != getattr(b.options, choice):
            raise ConceptAttentionError(
                f"the two models were patched with different {choice} settings ({getattr(a.options, choice)} and "
                f"{getattr(b.options, choice)}): give both Concept Attention (Generation) nodes the same one"
            )


def two_expert_saliency(first, final) -> SaliencyMaps | None:
    """The SALIENCY of a sampling that `first` (an earlier run) began and `final` finished: their maps averaged over
    all model calls both used. None when neither recorded maps."""
    _check_same_concepts(first, final)
    parts = [(r.maps, r.model_calls_used) for r in (first, final) if r.maps is not None and r.model_calls_used]
    if not parts:
        return None
    if len(parts) == 2 and parts[0][0].shape != parts[1][0].shape:
        raise ConceptAttentionError(
            f"the two runs' maps have different shapes ({tuple(parts[0][0].shape)} and {tuple(parts[1][0].shape)}): "
            "the second sampler must continue the first one's latent"
        )
    used = sum(n for _, n in parts)
    maps = sum(m * (n / used) for m, n in parts)
    metadata = {"model_calls": first.model_calls + final.model_calls, "model_calls_used": used,
                "experts": 2, "expert_model_calls_used": [first.model_calls_used, final.model_calls_used],
                **final.session.side_metadata(final.side_scores)}
    saliency = final.session.saliency(maps, final.latent_shape, metadata)
    if list(first.session.options.layers) != list(final.session.options.layers):
        saliency.metadata["layers_first_expert"] = list(first.session.options.layers)
    return saliency
