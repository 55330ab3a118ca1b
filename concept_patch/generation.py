"""Generation mode: a clone of the model whose sampler runs record concept maps, and finding them again."""

from __future__ import annotations

from .families import ModelFamily, detect_family
from .stream.layer_spec import parse_block_spec
from .stream.options import SaliencyOptions
from .stream.session import ConceptSession, new_session
from .stream.wrappers import find_sessions, offer_block_hooks, offer_shared_casts, patched_model_options
from .text.concepts import ConceptSet


def family_for(model, options: SaliencyOptions) -> ModelFamily:
    """The family of a ModelPatcher's diffusion model, with the selected blocks checked against it."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect_family(diffusion_model)
    family.check_blocks(diffusion_model, options)
    return family


def family_and_options(model, layers: str, **choices) -> tuple[ModelFamily, SaliencyOptions]:
    """What a node reads of the user's choice: the model's family (detected once) and the options, with the layers
    the user typed ("last 10, single 30-37") read against that family's blocks (which checks them)."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect_family(diffusion_model)
    chosen = parse_block_spec(layers, *family.block_counts(diffusion_model), family.block_label)
    options = SaliencyOptions(layers=tuple(chosen.layers), single_layers=tuple(chosen.single_layers), **choices)
    family.check_blocks(diffusion_model, options)
    return family, options


def install_concept_attention(model, concepts: ConceptSet, options: SaliencyOptions,
                              family: ModelFamily | None = None) -> tuple[object, ConceptSession]:
    """(clone of `model` whose forwards also run the concept stream and record maps, its session).

    family: the model's family where the caller detected it and checked the options against it (the nodes do)."""
    session = new_session(model, family or family_for(model, options), concepts, options)
    patched = model.clone()
    offer_block_hooks(patched, session)
    offer_shared_casts(patched, session)
    patched.model_options = patched_model_options(patched.model_options, session)
    return patched, session


__all__ = ["family_and_options", "family_for", "find_sessions", "install_concept_attention"]
