"""What a model family declares, and the interface the concept stream calls.

A family adapter is mostly data: its name and variants, the ComfyUI model class it reads (and a predicate that
tells its variant from others of the same class), the text encoders its concepts come from, the block lists the
concept stream passes (stream kinds, stream_kinds.py, which hold the block maths), its token grid and the one-line
descriptions of the concepts' position and modulation that docs/models.md's table shows. Methods are where a family
behaves differently: how concepts enter the model (initial_concepts / forward_concepts), per-forward inputs
(prepare_forward), the text modulation and positions a block gives them. Adapters are stateless; per-forward
data lives in the ForwardState (stream/forward_state.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch

from ..checks.errors import ConceptAttentionError
from ..stream.options import DOUBLE_BLOCK, SINGLE_BLOCK
from .stream_kinds import CrossAttention, StreamKind, attribute


@dataclass(frozen=True)
class ModelClass:
    """A ComfyUI diffusion-model class, named by module and class (older ComfyUIs lack the newer ones).

    exact: only the class itself, not its subclasses (a subclass with a family of its own)."""

    module: str
    name: str
    exact: bool = False

    def resolve(self):
        try:
            return getattr(importlib.import_module(self.module), self.name)
        except (ImportError, AttributeError):
            return None

    def matches(self, diffusion_model) -> bool:
        cls = self.resolve()
        if cls is None:
            return False
        return type(diffusion_model) is cls if self.exact else isinstance(diffusion_model, cls)


@dataclass(frozen=True)
class TextEncoder:
    """A text encoder the family's concepts come from.

    space:   the text space its states are in (text/encoders.py: the tokenizer key of a single-key encoder,
             "t5xxl", "clip-lg"); concepts must come from one of the family's spaces.
    name:    what users call it ("Qwen2.5-VL 7B").
    loader:  how it is loaded for this family ("CLIPLoader `qwen_image`").
    file:    the name of its usual file in ComfyUI's text_encoders folder, where that tells it apart.
    variant: the variant it belongs to, where variants read different encoders ("Klein 4B").
    layer:   the encoder layer the model reads, where models read one encoder at different layers of one width
             (text/encoders.encoder_layer: "last", "hidden -3"); concepts from another layer are refused.
    note:    which part of a multi-part encoder the concepts come from, for the README and tooltips.
    """

    space: str
    name: str
    loader: str
    file: str = ""
    variant: str = ""
    layer: str = ""
    note: str = ""

    def describe(self) -> str:
        text = f"{self.name} (`{self.file}`; {self.loader})" if self.file else f"{self.name} ({self.loader})"
        return f"{self.variant}: {text}" if self.variant else text


@dataclass(frozen=True)
class TokenGrid:
    """The token grid of a latent: (h, w) patches, and for a video family (frames, h, w).

    patch:      attribute path of the spatial patch size (an int, or a tuple whose last two entries it is).
    round_up:   ceil(h / p), where the patch embedder pads the latent to whole patches; else the nearest count,
                (h + p // 2) // p, as Flux-style models crop or pad by rounding.
    time_patch: attribute path of the temporal patch of a video family (an int, None meaning 1, or a 3-entry
                patch whose first entry it is); a picture family has none, and a 2-entry patch also means a picture.
    """

    patch: str
    round_up: bool = True
    time_patch: str | None = None

    def spatial(self, diffusion_model, latent_hw) -> tuple[int, int]:
        patch = attribute(diffusion_model, self.patch)
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)[-2:]
        h, w = latent_hw
        if self.round_up:
            return (-(-h // ph), -(-w // pw))
        return ((h + ph // 2) // ph, (w + pw // 2) // pw)

    def frames(self, diffusion_model, latent_frames: int) -> int | None:
        if self.time_patch is None:
            return None
        patch = attribute(diffusion_model, self.time_patch)
        if isinstance(patch, (tuple, list)):
            if len(patch) < 3:
                return None
            patch = patch[0]
        return -(-latent_frames // (patch or 1))


class ModelFamily:
    """One model family: declarations (class attributes) and the behaviour the concept stream calls."""

    #: Display name, as messages, tooltips and the README name it.
    name: str = ""
    #: Variants users know it by, for the supported-models lists.
    variants: tuple[str, ...] = ()
    #: The ComfyUI diffusion-model class it reads; is_variant tells it from other families of the same class.
    model: ModelClass | None = None
    #: The text encoders its concepts come from.
    encoders: tuple[TextEncoder, ...] = ()
    #: The block lists the concept stream passes: the first is what plain layer numbers select, a second one (a
    #: hybrid model's single-stream blocks) what 'single ...' parts select.
    blocks: tuple[StreamKind, ...] = ()
    #: How a latent becomes the token grid the maps are on.
    grid: TokenGrid | None = None
    #: docs/models.md's one-line descriptions of where the concepts sit and which modulation they take.
    position: str = ""
    modulation: str = ""
    #: An extension beyond the paper (concepts through weights the text shares, with no modulation of its own).
    extension: bool = False
    #: A video family (maps per token frame).
    video: bool = False
    #: A family whose side_metadata gives the concepts' shares along a generated soundtrack (maps/soundtrack.py keys:
    #: per audio latent frame): the preview's soundtrack strip and Concept Soundtrack Curve read them.
    soundtrack: bool = False
    #: Whether ComfyUI 0.3.x (0.3.64, kept working where cheap) runs this family, and the words that name the family
    #: in test ids: scripts/test.sh's compatibility run leaves out the tests of families 0.3.x lacks.
    runs_on_comfyui_0_3: bool = False
    test_ids: tuple[str, ...] = ()
    #: ModelPatcher wrapper whose call gives the per-forward inputs prepare_forward reads: "apply_model", or
    #: "diffusion_model" where the network's own inputs (timestep, guidance) are needed.
    forward_wrapper_type: str = "apply_model"

    # ----------------------------------------------------------------- which models

    def is_variant(self, diffusion_model: torch.nn.Module) -> bool:
        """Whether a model of `model`'s class is this family's variant (families sharing a class declare
        predicates that exclude each other)."""
        return True

    def matches(self, diffusion_model: torch.nn.Module) -> bool:
        return self.model is not None and self.model.matches(diffusion_model) and self.is_variant(diffusion_model)

    def refusal(self, diffusion_model: torch.nn.Module) -> str | None:
        """A sentence saying why a model this family matches still cannot be read, or None."""
        return None

    # ----------------------------------------------------------------- text

    @property
    def text_spaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.space for e in self.encoders))

    def text_layer(self, space: str) -> str:
        """The encoder layer this family reads for a text space, "" where it does not matter."""
        return next((e.layer for e in self.encoders if e.space == space and e.layer), "")

    def context_dim(self, diffusion_model: torch.nn.Module) -> int:
        """Width of the text-encoder states the model takes (concept embeddings must match)."""
        raise NotImplementedError

    def check_concepts(self, diffusion_model: torch.nn.Module, concepts) -> None:
        """Refuse concepts encoded for another model: by text space, encoder layer and width."""
        if concepts.text_space and concepts.text_space not in self.text_spaces:
            raise ConceptAttentionError(
                f"the concepts were encoded with {concepts.encoder} ({concepts.text_space} states), but this "
                f"{self.name} model reads {' or '.join(self.text_spaces)} states; build the Concept List with the "
                "CLIP loaded for this model"
            )
        layer = self.text_layer(concepts.text_space)
        if layer and concepts.text_layer and concepts.text_layer != layer:
            raise ConceptAttentionError(
                f"the concepts were encoded with {concepts.encoder}, whose states come from its {concepts.text_layer} "
                f"layer, but this {self.name} model reads that encoder's {layer} layer; build the Concept List with "
                "the CLIP loaded for this model"
            )
        expected = self.context_dim(diffusion_model)
        if concepts.context_dim != expected:
            raise ConceptAttentionError(
                f"the concepts were encoded by a text encoder with {concepts.context_dim}-wide states "
                f"({concepts.encoder or 'unknown encoder'}), but this {self.name} model reads {expected}-wide text "
                "states; build the Concept List with the CLIP loaded for this model"
            )

    # ----------------------------------------------------------------- blocks

    @property
    def cross_attention(self) -> bool:
        """A cross-attention model (its text never attends to the picture): maps in the paper's cross-attention
        baseline or the output-space extension (stream_kinds.CrossAttention), listed apart in messages."""
        return isinstance(self.blocks[0], CrossAttention) if self.blocks else False

    def stream_kind(self, hook: str) -> StreamKind:
        """The block list of this dit hook kind (DOUBLE_BLOCK: the first list, SINGLE_BLOCK: the second)."""
        index = {DOUBLE_BLOCK: 0, SINGLE_BLOCK: 1}[hook]
        if index >= len(self.blocks):
            raise ConceptAttentionError(f"{self.name} models have no single-stream blocks")
        return self.blocks[index]

    def block_counts(self, diffusion_model: torch.nn.Module) -> tuple[int, int]:
        """(blocks of the first list, blocks of the second list or 0)."""
        counts = [kind.count(diffusion_model) for kind in self.blocks[:2]]
        return counts[0], counts[1] if len(counts) > 1 else 0

    @property
    def block_label(self) -> str:
        """What plain layer numbers select, in messages ("dual-stream", "single-stream")."""
        return self.blocks[0].label

    def check_blocks(self, diffusion_model: torch.nn.Module, options) -> None:
        """The selected blocks must exist in this model, and their kind must give the maps the options ask for."""
        for kind in self.blocks[:1] + (self.blocks[1:2] if options.single_layers else ()):
            reason = kind.refusal(options)
            if reason:
                raise ConceptAttentionError(f"{self.name}: {reason}")
        main, second = self.block_counts(diffusion_model)
        if options.last_layer >= main:
            raise ConceptAttentionError(
                f"layer {options.last_layer} was selected but this {self.name} model has {main} {self.block_label} "
                f"blocks (0-{main - 1})"
            )
        if options.single_layers and options.single_layers[-1] >= second:
            has = f"{second} single-stream blocks (0-{second - 1})" if second else "no single-stream blocks"
            raise ConceptAttentionError(
                f"single-stream layer {options.single_layers[-1]} was selected but this {self.name} model has {main} "
                f"{self.block_label} blocks (0-{main - 1}) and {has}"
            )

    def cacheable_block_args(self, block_args: dict) -> dict:
        """What a re-query needs of a block call's arguments to run qkv again: everything but the streams (kept only
        as their shapes) and transformer_options."""
        kept = {k: v for k, v in block_args.items() if k not in ("img", "txt", "transformer_options", "pe")}
        for stream in ("img", "txt"):
            value = block_args.get(stream)
            if torch.is_tensor(value):
                kept[stream] = torch.empty(value.shape, dtype=value.dtype, device="meta")
        return kept

    # ----------------------------------------------------------------- the picture

    def token_grid(self, diffusion_model: torch.nn.Module, latent_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the main image's token grid for a latent of this height and width."""
        return self.grid.spatial(diffusion_model, latent_hw)

    def token_frames(self, diffusion_model: torch.nn.Module, latent_frames: int) -> int | None:
        """Token frames of a video latent with this many latent frames, or None for a picture model (its maps
        keep (h, w) even where its latent has a frame axis of 1, as Qwen-Image's)."""
        return self.grid.frames(diffusion_model, latent_frames)

    def pixel_frames(self, latent_frames: int, temporal_downscale: int) -> int:
        """Frames the model's VAE decodes a video latent with this many frames to. The default is a causal video
        VAE's (HunyuanVideo's): the first latent frame is one picture, each later one `temporal_downscale`."""
        return (latent_frames - 1) * temporal_downscale + 1

    def side_metadata(self, side_scores: dict) -> dict:
        """SALIENCY metadata entries from the scores of the side token groups its blocks declare
        (StreamKind.side_tokens): name -> [B, n, r] averaged over layers and model calls. None by default."""
        return {}

    # ----------------------------------------------------------------- the concept stream

    def initial_concepts(self, diffusion_model: torch.nn.Module, embeddings: torch.Tensor) -> torch.Tensor:
        """Concept residual before the first block, [r, hidden], from text-encoder embeddings [r, context_dim]."""
        raise NotImplementedError

    def forward_concepts(self, diffusion_model: torch.nn.Module, embeddings: torch.Tensor, forward: Any) -> torch.Tensor:
        """Concept residual before the first block for this forward's conditional rows, [Bc, r, hidden].

        The default embeds the concepts once (initial_concepts) for every row. A family whose text embedder
        depends on the forward (HunyuanVideo's token refiner reads the timestep) embeds them here."""
        c0 = self.initial_concepts(diffusion_model, embeddings)
        return c0.unsqueeze(0).expand(forward.num_cond_rows, -1, -1).contiguous()

    def prepare_forward(self, diffusion_model: torch.nn.Module, forward: Any, call: dict) -> None:
        """Family-specific per-forward inputs (e.g. Flux's concept modulation vector), from the call the
        forward_wrapper_type wrapper sees."""

    def text_modulation(self, block: torch.nn.Module, block_args: dict, forward: Any) -> tuple:
        """The modulation a block gives the concept rows (the text's), as its block maths reads it."""
        raise NotImplementedError(f"{self.name} blocks read their modulation themselves")

    def concept_text_positions(self, diffusion_model: torch.nn.Module, concepts) -> torch.Tensor | None:
        """Float [r]: the text position each concept takes, where the model gives text tokens positions.

        The default is the position its pooled tokens had in its own conditioning (ConceptSet.positions); a family
        whose model shifts text positions (e.g. left padding) maps them the same way."""
        return concepts.positions

    def required_text_positions(self, diffusion_model: torch.nn.Module, concepts) -> torch.Tensor:
        """concept_text_positions for a model that places text by position: concepts without positions (a
        CONCEPTS value built by other code, or before positions existed) are refused by name, not crashed on."""
        positions = self.concept_text_positions(diffusion_model, concepts)
        if positions is None:
            raise ConceptAttentionError(
                f"this {self.name} model places text tokens by position, but these concepts carry no positions; "
                "rebuild the Concept List with this model's text encoder"
            )
        return positions

    def text_id_axes(self, diffusion_model: torch.nn.Module, block_args: dict) -> list[int]:
        """The RoPE axes on which the model numbers its text tokens (none: text ids are zero)."""
        return []

    def text_start(self, diffusion_model: torch.nn.Module, grid: tuple[int, ...]) -> float | None:
        """Where the model starts numbering text tokens for this token grid, where that depends on the grid."""
        return None

    def concept_rope(self, forward: Any, block_args: dict) -> torch.Tensor | None:
        """The concepts' RoPE table for a block call, or None where the model leaves text unrotated."""
        return None
