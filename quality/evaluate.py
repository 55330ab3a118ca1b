"""The paper's segmentation benchmark, run with the pack on any supported model and a folder of pictures with masks.

For each picture of the dataset and each setting, the concept list is the picture's object words (caption order)
followed by the background words (default "background"); the pack makes one map per concept and
segmentation_metrics scores them: the single-object metrics (Table 1) on pictures with one object, the
multi-object metrics (Table 2) on every picture, as the paper runs Table 2 on all of PascalVOC.

Modes:
- "encode" (the paper's protocol): the picture is encoded (VAE, or the picture itself for a pixel-space model such
  as Chroma Radiance), noised to the setting's noise level and run through the model once (encode_saliency).
- "generation": the maps recorded while the stock sampler denoises the picture from that noise level over `steps`
  steps with the caption as prompt (image to image). The masks belong to the original picture, so the result
  holds only while the sampled picture stays close to it: each record gives `drift`, the mean absolute difference
  of the sampled picture from the original (0 to 1). A picture generated from pure noise has no known mask and is
  not scored.

In process: evaluate(model, clip, vae, dataset, settings=[Setting(...)], ...) with a ComfyUI ModelPatcher, a
comfy.sd.CLIP and a comfy.sd.VAE (None for a pixel-space model). Command line (loads through ComfyUI's loaders):

    python -m quality.evaluate --dataset FOLDER --unet MODEL.safetensors --clip TE.safetensors --clip-type chroma \\
        --vae pixel_space --space output cross_attention value --softmax on off --out results.json
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .segmentation_metrics import MultiObjectMetrics, SingleObjectMetrics
from .synthetic_world import Sample, read_dataset

MODES = ("encode", "generation")
PROMPTS = ("caption", "empty")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    """One way of making the maps.

    space, softmax, layers ("all", "last 10", "0-3, 7", ...), pooling: as Concept Saliency's inputs.
    noise_level, samples, seed: encode mode's noise (generation: the denoise strength and the sampler's seed).
    mode: "encode" or "generation" (module docstring); steps: the sampler's steps in generation mode.
    prompt: "caption" (the picture's caption as the prompt, as the authors do) or "empty".
    """

    space: str = "output"
    softmax: bool = True
    layers: str = "all"
    noise_level: float = 0.5
    samples: int = 1
    seed: int = 0
    mode: str = "encode"
    steps: int = 8
    prompt: str = "caption"
    pooling: str = "mean"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.prompt not in PROMPTS:
            raise ValueError(f"prompt {self.prompt!r} is not one of {', '.join(PROMPTS)}")

    def label(self) -> str:
        text = (f"{self.mode} {self.space} softmax {'on' if self.softmax else 'off'} layers {self.layers} "
                f"noise {self.noise_level:g}")
        return text + (f" steps {self.steps}" if self.mode == "generation" else "")


def evaluate(model, clip, vae, dataset: list[Sample], settings=(Setting(),), background_words=("background",),
             threshold: str = "mean", upsample_mode: str = "nearest", map_source=None, on_picture=None,
             cache_budget: int | None = 0) -> dict:
    """The benchmark's metrics per setting, with a record per picture.

    model: a ComfyUI ModelPatcher of a supported family; clip: its text encoder (comfy.sd.CLIP); vae: its
    comfy.sd.VAE, or None for a pixel-space model (the picture in the model's latent layout: [1, 3, H, W] in -1..1,
    what ComfyUI's pixel_space VAE gives). dataset: samples (synthetic_world.read_dataset or make_dataset).
    background_words: concepts added after each picture's object words (a word equal to an object is not repeated).
    threshold / upsample_mode: see segmentation_metrics. map_source(sample, names, setting) -> float [r, h, w]:
    replaces the pack's maps (tests, other methods); model, clip and vae are then unused.
    on_picture(setting index, picture index, record): called after each picture.
    cache_budget: bytes of recorded image streams kept for re-queries (encode_saliency): settings that differ only
    in space, softmax, layers within those recorded, or pooling then run the concept stream only. 0: none; None: the
    device's default budget.

    Returns {"background_words", "threshold", "upsample", "results": [{"setting", "label", "single_object",
    "multi_object", "images": [per-picture records]}]}.
    """
    settings = [settings] if isinstance(settings, Setting) else list(settings)
    source = map_source or PackMaps(model, clip, vae, cache_budget)
    results = []
    for s_index, setting in enumerate(settings):
        single = SingleObjectMetrics(threshold, upsample_mode)
        multi = MultiObjectMetrics(upsample_mode)
        records = []
        for p_index, sample in enumerate(dataset):
            names = list(sample.concepts) + [w for w in background_words if w not in sample.concepts]
            maps = source(sample, names, setting)
            extra = {}
            if isinstance(maps, tuple):  # (maps, extra record fields)
                maps, extra = maps
            maps = np.asarray(maps, dtype=np.float64)
            if maps.ndim != 3 or maps.shape[0] != len(names):
                raise ValueError(f"{sample.name}: expected maps [{len(names)}, h, w], got {maps.shape}")
            record = {"name": sample.name, "caption": sample.caption, "concepts": names,
                      "grid": list(maps.shape[1:]), **extra,
                      "single_object": (single.add(maps, 0, sample.masks[sample.concepts[0]], sample.ignore)
                                        if len(sample.concepts) == 1 else None),
                      "multi_object": multi.add(maps, names, sample.masks, sample.ignore)}
            records.append(record)
            if on_picture is not None:
                on_picture(s_index, p_index, record)
        results.append({"setting": asdict(setting), "label": setting.label(), "single_object": single.result(),
                        "multi_object": multi.result(), "images": records})
    return {"background_words": list(background_words), "threshold": threshold, "upsample": upsample_mode,
            "results": results}


def pack_module(name: str):
    """A module of the pack ("concept_patch.encode"), whether this file was imported inside the pack's package (as
    ComfyUI and the tests import it) or as a top-level `quality` (the command line): the repository root is then
    registered as the package `concept_attention`, as the tests do."""
    parent = (__package__ or "").rpartition(".")[0]
    if not parent:
        parent = "concept_attention"
        if parent not in sys.modules:
            spec = importlib.util.spec_from_file_location(parent, REPO / "__init__.py",
                                                          submodule_search_locations=[str(REPO)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[parent] = module
            spec.loader.exec_module(module)
    return importlib.import_module(f"{parent}.{name}")


def picture_latent(model, vae, image: np.ndarray):
    """The picture (uint8 [H, W, 3]) in the model's latent layout: vae.encode of the IMAGE, or, without a VAE, for
    a pixel-space model, what ComfyUI's pixel_space VAE gives ([1, 3, H, W], 2 * pixel - 1)."""
    import torch

    pixels = torch.from_numpy(np.ascontiguousarray(image)).float().div(255.0)[None]
    if vae is not None:
        return vae.encode(pixels[:, :, :, :3])
    latent_format = model.get_model_object("latent_format")
    if getattr(latent_format, "spacial_downscale_ratio", 8) != 1 or getattr(latent_format, "latent_channels", 0) != 3:
        raise ValueError(f"{type(latent_format).__name__} is not a pixel-space latent: give the model's VAE")
    return pixels.movedim(-1, 1) * 2.0 - 1.0


class PackMaps:
    """The pack's maps of a sample for a setting, float [r, h, w] on the token grid (a map_source). Concept sets,
    prompts, latents and options are kept across pictures and settings."""

    def __init__(self, model, clip, vae, cache_budget: int | None = 0):
        self.model, self.clip, self.vae, self.cache_budget = model, clip, vae, cache_budget
        self._concepts, self._prompts, self._latents, self._options = {}, {}, {}, {}

    def concepts(self, names, pooling):
        key = (tuple(names), pooling)
        if key not in self._concepts:
            encode_concepts = pack_module("concept_patch.text.encoding").encode_concepts
            self._concepts[key] = encode_concepts(self.clip, list(names), pooling)
        return self._concepts[key]

    def prompt(self, caption):
        if caption not in self._prompts:
            self._prompts[caption] = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(caption))
        return self._prompts[caption]

    def options(self, setting: Setting):
        key = (setting.layers, setting.space, setting.softmax)
        if key not in self._options:
            family_and_options = pack_module("concept_patch.generation").family_and_options
            self._options[key] = family_and_options(self.model, setting.layers, space=setting.space,
                                                    softmax=setting.softmax)
        return self._options[key]

    def latent(self, sample: Sample):
        key = (sample.name, sample.image.tobytes().__hash__())
        if key not in self._latents:
            self._latents[key] = picture_latent(self.model, self.vae, sample.image)
        return self._latents[key]

    def __call__(self, sample: Sample, names, setting: Setting):
        family, options = self.options(setting)
        concepts = self.concepts(names, setting.pooling)
        conditioning = self.prompt(sample.caption) if setting.prompt == "caption" and sample.caption else None
        latent = self.latent(sample)
        if setting.mode == "encode":
            encode_saliency = pack_module("concept_patch.encode").encode_saliency
            saliency = encode_saliency(self.model, concepts, latent, options, conditioning=conditioning,
                                       noise_level=setting.noise_level, samples=setting.samples, seed=setting.seed,
                                       image_size=sample.size, family=family, cache_budget=self.cache_budget)
            return saliency.maps[0].float().numpy()
        return self._generated(sample, concepts, options, family, conditioning, latent, setting)

    def _generated(self, sample, concepts, options, family, conditioning, latent, setting):
        import comfy.sample
        import torch

        install = pack_module("concept_patch.generation").install_concept_attention
        patched, session = install(self.model, concepts, options, family)
        positive = conditioning if conditioning is not None else concepts.empty_prompt
        noise = comfy.sample.prepare_noise(latent, setting.seed)
        out = comfy.sample.sample(patched, noise, setting.steps, 1.0, "euler", "simple", positive,
                                  concepts.empty_prompt, latent, denoise=setting.noise_level, seed=setting.seed,
                                  disable_pbar=True)
        record = session.records[-1] if session.records else None
        if record is None or record.saliency is None:
            raise RuntimeError(f"{sample.name}: the sampler's run recorded no maps")
        if self.vae is not None:
            picture = self.vae.decode(out)[0, ..., :3].float()
        else:
            picture = (out[0].movedim(0, -1).float() + 1.0).div(2.0).clamp(0.0, 1.0)
        original = torch.from_numpy(sample.image).float().div(255.0)
        drift = float((picture[: original.shape[0], : original.shape[1]] - original).abs().mean())
        return record.saliency.maps[0].float().numpy(), {"drift": drift}


def mask_oracle(grid: tuple[int, int]):
    """A map_source of the best maps a model with this token grid could give: each concept's map is the share of
    each token's pixels that its mask covers (background words: the background's share). It scores what the grid's
    resolution allows, the ceiling to read a model's numbers against; grid must divide the picture size."""

    def maps(sample: Sample, names, setting=None):
        (height, width), (h, w) = sample.size, grid
        if height % h or width % w:
            raise ValueError(f"a {h}x{w} grid does not divide the {width}x{height} picture {sample.name}")
        planes = [sample.masks[n] if n in sample.masks else sample.background for n in names]
        stack = np.stack(planes).astype(np.float64)
        return stack.reshape(len(names), h, height // h, w, width // w).mean(axis=(2, 4))

    return maps


def settings_grid(spaces=("output",), softmaxes=(True,), layers=("all",), noise_levels=(0.5,), modes=("encode",),
                  **common) -> list[Setting]:
    """Every combination of the listed choices, as Settings (common: the other Setting fields)."""
    return [Setting(space=sp, softmax=sm, layers=ly, noise_level=nl, mode=md, **common)
            for md, sp, sm, ly, nl in itertools.product(modes, spaces, softmaxes, layers, noise_levels)]


def summary_table(report: dict) -> str:
    """A Markdown table of the report: one row per setting."""
    lines = ["| setting | single Acc | single mIoU | single mAP | multi Acc | multi mIoU | pictures |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.2f}"  # noqa: E731
    for result in report["results"]:
        so, mo = result["single_object"], result["multi_object"]
        lines.append(f"| {result['label']} | {fmt(so['pixel_accuracy'])} | {fmt(so['miou'])} | {fmt(so['map'])} | "
                     f"{fmt(mo['pixel_accuracy'])} | {fmt(mo['miou'])} | {so['images']} + {mo['images'] - so['images']} |")
    return "\n".join(lines)


def _load(args):
    """(model, clip, vae) through ComfyUI's own loaders, ComfyUI put on sys.path first (CPU mode with --cpu)."""
    comfyui = Path(args.comfyui).expanduser()
    if not (comfyui / "comfy").is_dir():
        raise SystemExit(f"no ComfyUI at {comfyui}: pass --comfyui or set COMFYUI_PATH")
    if str(comfyui) not in sys.path:
        sys.path.insert(0, str(comfyui))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args as comfy_args

    comfy_args.cpu = bool(args.cpu)
    import comfy.sd
    import comfy.utils
    import torch

    if args.shapes_model:
        from .shapes_model import load_shapes_model

        model, clip, _ = load_shapes_model(args.shapes_model)
        return model, clip, None
    model = comfy.sd.load_diffusion_model(args.unet)
    clip_type = getattr(comfy.sd.CLIPType, args.clip_type.upper())
    clip = comfy.sd.load_clip(ckpt_paths=list(args.clip), clip_type=clip_type)
    if args.vae is None:
        vae = None
    elif args.vae == "pixel_space":
        vae = comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})  # what Load VAE's pixel_space entry builds
    else:
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(args.vae))
    return model, clip, vae


def main(argv=None) -> None:
    import argparse
    import os

    on_off = {"on": True, "off": False}
    parser = argparse.ArgumentParser(prog="python -m quality.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder of NAME.png + NAME.json (+ masks), docs/quality.md")
    parser.add_argument("--unet", help="the diffusion model file (Load Diffusion Model)")
    parser.add_argument("--clip", nargs="+", help="the text encoder file(s) (Load CLIP / DualCLIPLoader)")
    parser.add_argument("--clip-type", help="ComfyUI's CLIP type: flux, sd3, chroma, qwen_image, ...")
    parser.add_argument("--shapes-model", metavar="PATH", help="instead of --unet/--clip: the shapes model file "
                        "(quality/shapes_model.py; its text encoder is in the same file)")
    parser.add_argument("--vae", help="the VAE file, or pixel_space; leave out for a pixel-space model")
    parser.add_argument("--space", nargs="+", default=["output"], choices=["output", "cross_attention", "value"])
    parser.add_argument("--softmax", nargs="+", default=["on"], choices=list(on_off))
    parser.add_argument("--layers", nargs="+", default=["all"], help="one or more layer choices, e.g. 'all' 'last 2'")
    parser.add_argument("--noise-level", nargs="+", type=float, default=[0.5])
    parser.add_argument("--mode", nargs="+", default=["encode"], choices=list(MODES))
    parser.add_argument("--steps", type=int, default=8, help="sampler steps in generation mode")
    parser.add_argument("--samples", type=int, default=1, help="noise draws averaged per picture")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="caption", choices=list(PROMPTS))
    parser.add_argument("--background", nargs="*", default=["background"], help="background words added to each list")
    parser.add_argument("--threshold", default="mean", choices=["mean", "argmax"])
    parser.add_argument("--upsample", default="nearest", choices=["nearest", "bilinear"])
    parser.add_argument("--limit", type=int, help="only the first N pictures")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH", "~/ComfyUI"))
    parser.add_argument("--cpu", action="store_true", help="run on the CPU")
    parser.add_argument("--out", help="write the full report (per-picture records included) here as JSON")
    args = parser.parse_args(argv)
    if not args.shapes_model and not (args.unet and args.clip and args.clip_type):
        parser.error("give --unet, --clip and --clip-type (or --shapes-model)")

    dataset = read_dataset(args.dataset)[: args.limit]
    settings = settings_grid(args.space, [on_off[v] for v in args.softmax], args.layers, args.noise_level, args.mode,
                             steps=args.steps, samples=args.samples, seed=args.seed, prompt=args.prompt)
    model, clip, vae = _load(args)
    progress = lambda s, p, _: print(f"\rsetting {s + 1}/{len(settings)} picture {p + 1}/{len(dataset)}",  # noqa: E731
                                     end="", file=sys.stderr, flush=True)
    report = evaluate(model, clip, vae, dataset, settings, tuple(args.background), args.threshold, args.upsample,
                      on_picture=progress)
    print(file=sys.stderr)
    report["dataset"] = str(args.dataset)
    report["model"] = ({"shapes_model": args.shapes_model} if args.shapes_model else
                       {"unet": args.unet, "clip": list(args.clip), "clip_type": args.clip_type, "vae": args.vae})
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(summary_table(report))


if __name__ == "__main__":
    main()
