"""Manual check: ConceptAttention on GGUF models loaded by city96's ComfyUI-GGUF (issue 26, part 2).

ComfyUI-GGUF cannot be installed in CI and its code is not part of this repository, so this is a script to run by
hand, on the CPU, with that pack checked out somewhere and the `gguf` package in the Python that runs ComfyUI:

    $PY -m pip install gguf
    $PY benchmarks/check_gguf.py /path/to/ComfyUI-GGUF [--comfyui ~/ComfyUI]

For Flux.1, Qwen-Image, Wan 2.1 and HunyuanVideo (the test tier's tiny random-weight models, tests/comfy/tiny) and for each of
Q8_0 and Q4_0 (gguf-py writes both; it cannot write K-quants, which llama.cpp's patched tool makes):
  1. the tiny model's state dict is written as a GGUF file with the `gguf` package's GGUFWriter, as ComfyUI-GGUF's
     tools/convert.py writes one (general.architecture; 2-D weights whose rows split into 32-value blocks quantized,
     1-D and other tensors F32; tensors of more than 4 dimensions, Wan's Conv3d patch embedding, F32 and flattened,
     with their shape in comfy.gguf.orig_shape.<key>, as the pack's tools/fix_5d_tensors.py restores them);
  2. it is read by the pack's `loader.gguf_sd_loader` (GGMLTensor weights) and built as its UnetLoaderGGUF node
     builds it: `GGMLOps` as the model's custom_operations, then `GGUFModelPatcher.clone`. ComfyUI's detection cannot read
     these tiny configs (comfy.sd.load_diffusion_model_state_dict fails on all four: Flux's hard-codes 3072 wide), so
     the config comes from the model that wrote the file; the load steps are that function's after detection;
  3. checked: every quantized Linear holds a GGMLTensor; generation (2 euler steps) gives the same latent bit for bit
     with the concept stream on and off; encode (Concept Saliency's forward at noise 0.5) gives finite maps, and
     their raw-score relative error against the full-precision model's (the picture's beside it, for scale); a
     re-query (other concepts on the same latent, through the re-query cache) equals a full run of those concepts.
Prints one line per family and format and exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONCEPTS = ["dog", "green grass", "sky"]
OTHER = ["dog", "collar", "leash"]


def _setup(comfyui: Path, gguf_pack: Path):
    import os

    os.environ["COMFYUI_PATH"] = str(comfyui)
    sys.path.insert(0, str(REPO / "tests"))
    import conftest  # noqa: F401  (registers concept_attention and concept_attention_tests; ComfyUI on the CPU)

    # The GGUF pack as a package of its own (its modules import each other relatively), without its __init__
    # (which registers nodes with ComfyUI's server).
    name = "comfyui_gguf_under_check"
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = [str(gguf_pack)]
    sys.modules[name] = importlib.util.module_from_spec(spec)
    packs = types.SimpleNamespace()
    for module in ("ops", "loader", "dequant", "nodes"):
        setattr(packs, module, importlib.import_module(f"{name}.{module}"))
    return packs


def _families():
    from concept_attention_tests.comfy.tiny import tiny_hunyuan_video, tiny_models, tiny_text_encoders, tiny_wan

    # family: (model builder, text encoder builder, GGUF architecture, latent shape, sampling arguments)
    return {
        "Flux.1": (tiny_models.flux_model, tiny_models.flux_clip, "flux", (1, 16, 6, 8), {"cfg": 1.0}),
        "Qwen-Image": (tiny_models.qwen_image_model, tiny_text_encoders.qwen_image_clip, "qwen_image",
                       (1, 16, 1, 6, 8), {"cfg": 3.0}),
        "Wan 2.1": (tiny_wan.wan_model, tiny_wan.wan_clip, "wan", (1, 16, 3, 4, 6), {"cfg": 3.0}),
        "HunyuanVideo": (tiny_hunyuan_video.hunyuan_video_model, tiny_text_encoders.hunyuan_video_clip, "hyvid",
                         (1, 16, 3, 4, 6), {"cfg": 1.0}),
    }


def write_gguf(sd: dict, arch: str, qtype_name: str, path: Path) -> int:
    """The state dict as a GGUF file (module docstring, step 1); returns the number of quantized tensors."""
    import gguf
    import torch

    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    writer = gguf.GGUFWriter(path=None, arch=arch)
    quantized = 0
    for key, tensor in sd.items():
        data = tensor.detach().to(torch.float32).cpu().numpy()
        matrix = data.ndim == 2 and data.shape[-1] % 32 == 0 and key.endswith(".weight")
        if data.ndim > 4:  # (Wan's Conv3d patch embedding: F32, as the pack's 5-D fix keeps it)
            writer.add_array(f"comfy.gguf.orig_shape.{key}", tuple(int(d) for d in data.shape))
            data = data.reshape(data.shape[0], -1)
        if matrix:
            data, dtype = gguf.quants.quantize(data, qtype), qtype
            quantized += 1
        else:
            dtype = gguf.GGMLQuantizationType.F32
        writer.add_tensor(key, data, raw_dtype=dtype)
    writer.write_header_to_file(path=str(path))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return quantized


def load_gguf(packs, path: Path, full_model):
    """The file read and built as ComfyUI-GGUF's UnetLoaderGGUF does (module docstring, step 2)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.utils
    import torch

    ops = packs.ops.GGMLOps()
    ops.Linear.dequant_dtype = None
    ops.Linear.patch_dtype = None
    sd = packs.loader.gguf_sd_loader(str(path))
    config = full_model.model.model_config
    model_config = type(config)({k: v for k, v in config.unet_config.items() if k not in ("dtype", "device")})
    load_device = comfy.model_management.get_torch_device()
    unet_dtype = comfy.model_management.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                                                   supported_dtypes=list(model_config.supported_inference_dtypes),
                                                   weight_dtype=comfy.utils.weight_dtype(sd))
    manual_cast_dtype = comfy.model_management.unet_manual_cast(unet_dtype, load_device,
                                                                model_config.supported_inference_dtypes)
    model_config.set_inference_dtype(unet_dtype, manual_cast_dtype, device=load_device)
    model_config.custom_operations = ops
    model = model_config.get_model(sd, "")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=torch.device("cpu"))
    model.load_model_weights(sd, "")
    return packs.nodes.GGUFModelPatcher.clone(patcher)


def check(packs, family: str, qtype: str, tmp: Path) -> tuple[bool, str]:
    import torch

    from concept_attention.concept_patch.encode import encode_saliency
    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.requery import cache as requery_cache
    from concept_attention.concept_patch.stream.options import SaliencyOptions
    from concept_attention.concept_patch.text.encoding import encode_concepts
    from concept_attention_tests.comfy.sampling import sample

    build, clip_builder, arch, shape, kwargs = _families()[family]
    full, clip = build(), clip_builder()
    path = tmp / f"{arch}-{qtype}.gguf"
    count = write_gguf(full.model.diffusion_model.state_dict(), arch, qtype, path)
    model = load_gguf(packs, path, full)
    ggml = [n for n, m in model.model.diffusion_model.named_modules()
            if packs.dequant.is_quantized(getattr(m, "weight", None))]
    options = SaliencyOptions(layers=(0, 1, 2))
    concepts, other = encode_concepts(clip, CONCEPTS), encode_concepts(clip, OTHER)

    plain = sample(model, clip, latent_shape=shape, steps=2, **kwargs)
    patched, session = install_concept_attention(model, concepts, options)
    out = sample(patched, clip, latent_shape=shape, steps=2, **kwargs)
    generation_maps = session.records[-1].saliency.maps
    identical = bool(torch.isfinite(plain).all()) and torch.equal(plain, out)
    full_plain = sample(full, clip, latent_shape=shape, steps=2, **kwargs)
    picture_error = float((plain - full_plain).norm() / full_plain.norm())

    latent = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a dog on the grass"))
    raw = SaliencyOptions(layers=(0, 1, 2), softmax=False)
    requery_cache.CACHE.clear()
    maps = encode_saliency(model, concepts, latent, raw, conditioning=cond, cache_budget=1 << 30)
    requeried = encode_saliency(model, other, latent, raw, conditioning=cond, cache_budget=1 << 30)
    was_requery = bool(requeried.metadata.get("requery"))
    requery_cache.CACHE.clear()
    fresh = encode_saliency(model, other, latent, raw, conditioning=cond, cache_budget=0)
    reference = encode_saliency(full, concepts, latent, raw, conditioning=cond, cache_budget=0)
    error = float((maps.maps - reference.maps).norm() / reference.maps.norm())
    finite = all(bool(torch.isfinite(m).all()) for m in (generation_maps, maps.maps, requeried.maps))
    requery_equal = torch.equal(requeried.maps, fresh.maps)
    ok = identical and finite and requery_equal and was_requery and len(ggml) == count > 0
    line = (f"{family:12s} {qtype}: {len(ggml)}/{count} GGMLTensor weights, picture bit-identical {identical}, "
            f"maps finite {finite}; relative error vs full precision: picture {picture_error:.4f}, encode raw maps "
            f"{error:.4f}; "
            f"re-query ran {was_requery}, equals a full run {requery_equal}")
    return ok, line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gguf_pack", type=Path, help="a checkout of city96/ComfyUI-GGUF")
    parser.add_argument("--comfyui", type=Path, default=Path.home() / "ComfyUI")
    parser.add_argument("--qtypes", default="Q8_0,Q4_0")
    parser.add_argument("--families", default="Flux.1,Qwen-Image,Wan 2.1,HunyuanVideo")
    args = parser.parse_args()
    packs = _setup(args.comfyui.expanduser().resolve(), args.gguf_pack.expanduser().resolve())
    import torch

    torch.set_num_threads(1)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            for qtype in args.qtypes.split(","):
                ok, line = check(packs, family, qtype, Path(tmp))
                print(("ok   " if ok else "FAIL ") + line, flush=True)
                failed += not ok
    print(f"{failed} failed" if failed else "all checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
