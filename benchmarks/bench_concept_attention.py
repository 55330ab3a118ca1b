#!/usr/bin/env python3
"""Step time, peak VRAM and host-device syncs of ConceptAttention on full-size random-weight models.

Builds Flux.1-dev (bf16, hidden 3072, 19 double + 38 single blocks, guidance embed),
SD3.5-large (bf16, depth 38, hidden 2432) and, with --models flux2dev,klein9b, Flux.2-dev (bf16, hidden
6144, 8 double + 48 single blocks, ~32 B parameters) and Flux.2-Klein-9B (hidden 4096, 8 + 24 blocks)
(and the other --models: Qwen-Image, HiDream-I1, CogVideoX-5B, Z-Image, HunyuanVideo 1.5, Krea 2, MiniMax H3)
through ComfyUI's own classes
(comfy.supported_models config -> get_model -> model_base), fills the uninitialised weights
(and float buffers such as SD3's pos_embed) with small random values on the GPU, wraps them in
a real ModelPatcher and samples through comfy.sample.sample. Weights do not change speed.

Measures, per model and resolution:
  * time per sampling step: plain ComfyUI vs generation mode with R concepts over all
    dual-stream blocks (step = (t(N steps) - t(M steps)) / (N - M), CUDA-synchronised,
    median over interleaved repeats);
  * peak VRAM (torch.cuda.max_memory_allocated, reset before each run);
  * encode mode (encode_saliency) vs one full forward and vs a plain forward stopped after
    the same last block;
  * host-device synchronisations (torch.cuda.set_sync_debug_mode("warn"), each warning
    attributed to the Python file that triggered it);
  * optionally a torch.profiler breakdown of our code (concept qkv, SDPA, scores, update);

MiniMax H3 (--models minimax; ComfyUI 0.33's comfy/ldm/minimax/model.py, a video + audio model): built as
comfy.model_detection reads the stock video_minimax_h3_i2v template's checkpoint
(minimax_h3_fl2va_pruned_int8_convrot: 50 single-stream blocks 5376 wide, 56 heads of 128, SwiGLU 14336,
2-block token refiner, Qwen3-VL states 5120 wide, the "pruned" curve-form adaLN: adaln_t_table [1025, 8]
instead of the time embedder), in bf16 here (the file is int8): ~20.1 B parameters, ~40 GB of weights, so it
fits an 80 GB H100 whole. Its latent is ComfyUI's NestedTensor [video [1, 24, T, H/16, W/16], audio
[1, 32, 2, A]] as EmptyMiniMaxH3LatentAV / MiniMaxH3ImageToVideo make it, timed at the template's defaults
(1344x768, 124 frames at 24 fps = 37 latent frames, 207 audio frames: 37,296 video + 414 audio + 256 text
rows), sampled at cfg 1 (the template's BasicGuider: the checkpoint is guidance-distilled). Text to video
(no first frame, which the template's node allows): image to video would add the first frame's condition rows
(about one latent frame more, not denoised) to the same packed sequence. The bit-identity check compares
both streams. Steps use this script's euler/simple, not the template's res_multistep (one model call per
step either way). Weights ~37.5 GiB + activations (~0.4 GB per 5376-wide row tensor of the 37,966 rows; ComfyUI
reserves ~8 GiB for the packed latent): ~45 GiB of an H100's 79 GiB. A step is ~3.5 PFLOP (some 60 % of it
attention over the 38 k rows): expect several seconds a step, so time fewer steps and repeats, and the
re-query in a command of its own (each stays inside the device's 10 minutes):
  SKIP_AUTHORS=1 BENCH_BUDGET=450 BENCH_TIMEOUT=580 bash benchmarks/run_device.sh --models minimax \
      --resolutions 1344x768x124 --concepts 8 --steps 4 --short-steps 2 --repeats 2 --encode-repeats 3 --skip-sync
  SKIP_AUTHORS=1 BENCH_BUDGET=450 BENCH_TIMEOUT=580 bash benchmarks/run_device.sh --models "" --requery minimax \
      --resolutions 1344x768x124 --encode-repeats 3

Wan 2.2 14B (--models wan; one expert: the high- and low-noise experts have the same architecture): 40 blocks 5120
wide, 40 heads of 128, UMT5-XXL states 4096 wide padded to 512 tokens, ~14 B parameters, ~28 GB in bf16, timed
at the video_wan2_2_14B_t2v template's 640x640x81 (21 latent frames, 33,600 video tokens) with cfg 3.5. The maps
add only small products to what each cross-attention layer computes (docs/cross-attention.md). Not yet run on a
GPU here; a first command that fits the device's 10 minutes:
  SKIP_AUTHORS=1 BENCH_BUDGET=380 BENCH_TIMEOUT=530 bash benchmarks/run_device.sh --models wan \
      --resolutions 640x640x81 --concepts 8 --steps 4 --short-steps 2 --repeats 2 --encode-repeats 2 --skip-sync

CPU smoke test:   python benchmarks/bench_concept_attention.py --tiny
GPU (see benchmarks/run_device.sh for the full command).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T_START = time.monotonic()


def log(*a):
    print(f"[bench {time.monotonic() - T_START:7.1f}s]", *a, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test of the script)")
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH") or "",
                   help="ComfyUI checkout (default: benchmarks/.cache/ComfyUI, else ~/ComfyUI)")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, "benchmarks", ".cache", "out"))
    p.add_argument("--models", default="flux,sd3",
                   help="comma-separated: flux (Flux.1-dev), sd3 (SD3.5-large), flux2dev (Flux.2-dev), "
                        "klein9b (Flux.2-Klein-9B), qwen (Qwen-Image), hidream (HiDream-I1 full), cogvideox "
                        "(CogVideoX-5B), zimage (Z-Image), hv15 (HunyuanVideo 1.5), krea2 (Krea 2), minimax "
                        "(MiniMax H3, video + audio), wan (Wan 2.2 14B, one expert)")
    p.add_argument("--requery", default="",
                   help="comma-separated models (flux, sd3, ...): time re-queries of new concepts on a picture "
                        "already encoded against the encode itself, and the cache's bytes per picture")
    p.add_argument("--flux2-single-blocks", type=int, default=None,
                   help="build Flux.2 models with this many single-stream blocks instead of the checkpoint's "
                        "(48 dev, 24 Klein 9B), for a card too small for the whole model; stated in the results")
    p.add_argument("--resolutions", default="1024x1024,1536x1024",
                   help="WxH in pixels (WxHxF for a clip; video models time their default clip, VIDEO_RESOLUTIONS, "
                        "and take the first entry's size for encode and re-query)")
    p.add_argument("--concepts", default="4,8,32")
    p.add_argument("--steps", type=int, default=10, help="N: steps of the long run")
    p.add_argument("--short-steps", type=int, default=2, help="M: steps of the short run subtracted")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--encode-repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="torch.profiler breakdown of our code")
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--skip-sync", action="store_true")
    p.add_argument("--no-cuda-malloc", action="store_true",
                   help="keep PyTorch's native allocator (ComfyUI's --disable-cuda-malloc)")
    p.add_argument("--last10", action="store_true",
                   help="also time generation with 8 concepts over the last 10 dual-stream blocks (the paper's Flux default)")
    p.add_argument("--compare-with", default="",
                   help="another checkout of this pack (e.g. `git archive` of an earlier commit): also time 8 "
                        "concepts over all blocks with its code, interleaved with the current code (variant 'ca_r8_other')")
    p.add_argument("--diagnose", action="store_true",
                   help="also time two diagnostic variants with 8 concepts that skip part of the work (their maps are "
                        "wrong; they only show where the time goes): no concept update (no proj/MLP), no concept "
                        "attention or map (no image K/V reads)")
    p.add_argument("--budget-s", type=float, default=1e9,
                   help="stop starting new sections after this many seconds (results so far are kept)")
    return p.parse_args()


ARGS = parse_args()


# ----------------------------------------------------------------------------------------------
# Imports: ComfyUI (only comfy.* modules) and this pack as package `concept_attention`.
# ----------------------------------------------------------------------------------------------

def find_comfyui():
    for cand in (ARGS.comfyui, os.path.join(REPO, "benchmarks", ".cache", "ComfyUI"), os.path.expanduser("~/ComfyUI")):
        if cand and os.path.isfile(os.path.join(cand, "comfy", "model_management.py")):
            return os.path.abspath(cand)
    sys.exit("ComfyUI not found: pass --comfyui or run benchmarks/prepare_device.sh")


COMFYUI = find_comfyui()
sys.path.insert(0, COMFYUI)
import comfy.cli_args  # noqa: E402

if ARGS.tiny:
    comfy.cli_args.args.cpu = True
elif ARGS.no_cuda_malloc:
    comfy.cli_args.args.disable_cuda_malloc = True
if not ARGS.tiny:
    # As ComfyUI's main.py does before torch is imported: cudaMallocAsync by default on CUDA torch.
    import cuda_malloc  # noqa: E402,F401
import comfy.model_management  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.patcher_extension  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
import comfy.supported_models  # noqa: E402
import torch  # noqa: E402


def import_pack(name="concept_attention", root=REPO):
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"), submodule_search_locations=[root])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


import_pack()
from concept_attention.concept_patch.encode import encode_saliency  # noqa: E402
from concept_attention.concept_patch.families import detect_family  # noqa: E402
from concept_attention.concept_patch.families.flux import FluxDoubleBlocks, FluxFamily  # noqa: E402
from concept_attention.concept_patch.families.flux2 import Flux2Family  # noqa: E402
from concept_attention.concept_patch.families.minimax import MiniMaxBlocks  # noqa: E402
from concept_attention.concept_patch.families.sd3 import JointBlocks  # noqa: E402
from concept_attention.concept_patch.generation import install_concept_attention  # noqa: E402
from concept_attention.concept_patch.requery import cache as image_stream_cache  # noqa: E402
from concept_attention.concept_patch.stream import attention_capture as ca_capture  # noqa: E402
from concept_attention.concept_patch.stream import forward_state as ca_forward  # noqa: E402
from concept_attention.concept_patch.stream import sampling_run as ca_run  # noqa: E402
from concept_attention.concept_patch.stream.layer_spec import parse_block_spec  # noqa: E402
from concept_attention.concept_patch.stream.options import SaliencyOptions  # noqa: E402
from concept_attention.concept_patch.text.concepts import ConceptSet  # noqa: E402

DEVICE = comfy.model_management.get_torch_device()
CUDA = DEVICE.type == "cuda"
DTYPE = torch.bfloat16 if CUDA else torch.float32
PACK_DIR = os.path.join(REPO, "concept_patch")


def sync():
    if CUDA:
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

def flux_config(tiny):
    if tiny:
        return {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 32,
                "context_in_dim": 64, "hidden_size": 64, "mlp_ratio": 4.0, "num_heads": 2, "depth": 3,
                "depth_single_blocks": 2, "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2,
                "qkv_bias": True, "guidance_embed": True, "txt_ids_dims": [], "yak_mlp": False, "txt_norm": False}
    # What comfy.model_detection derives from the Flux.1-dev checkpoint.
    return {"image_model": "flux", "in_channels": 16, "out_channels": 16, "vec_in_dim": 768,
            "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "depth": 19,
            "depth_single_blocks": 38, "axes_dim": [16, 56, 56], "theta": 10000, "patch_size": 2,
            "qkv_bias": True, "guidance_embed": True, "txt_ids_dims": [], "yak_mlp": False, "txt_norm": False}


# Flux.2 as comfy.model_detection builds it from a checkpoint with `double_stream_modulation_img`:
# global modulation, SiLU-gated MLPs (mlp_ratio 3), no biases, 4 RoPE axes of 32 (theta 2000, text on
# axis 3), patch 1 on the 128-channel latent; num_heads = hidden / sum(axes_dim). Widths and depths are
# the checkpoints' (img_in/txt_in shapes, block counts), guidance_embed from `guidance_in.in_layer.weight`.
FLUX2_VARIANTS = {
    # Flux.2-dev: Mistral-Small-3.1 24B text states (3 layers x 5120), guidance-distilled (cfg 1).
    "flux2dev": {"hidden_size": 6144, "context_in_dim": 15360, "depth": 8, "depth_single_blocks": 48,
                 "guidance_embed": True},
    # Flux.2-Klein-9B: Qwen3-8B text states (3 layers x 4096), no guidance embedding.
    "klein9b": {"hidden_size": 4096, "context_in_dim": 12288, "depth": 8, "depth_single_blocks": 24,
                "guidance_embed": False},
}
FLUX_CLASS = ("flux",) + tuple(FLUX2_VARIANTS)
NAMES = {"flux": "Flux.1-dev", "sd3": "SD3.5-large", "flux2dev": "Flux.2-dev", "klein9b": "Flux.2-Klein-9B",
         "cogvideox": "CogVideoX-5B", "zimage": "Z-Image", "hv15": "HunyuanVideo-1.5", "krea2": "Krea-2",
         "qwen": "Qwen-Image", "hidream": "HiDream-I1", "minimax": "MiniMax H3"}


def flux2_config(variant, tiny):
    v = dict(FLUX2_VARIANTS[variant])
    axes = [32, 32, 32, 32]
    if tiny:
        v.update(hidden_size=64, context_in_dim=96 if variant == "flux2dev" else 72, depth=3, depth_single_blocks=2)
        axes = [8, 8, 8, 8]
    if ARGS.flux2_single_blocks is not None:
        v["depth_single_blocks"] = ARGS.flux2_single_blocks
    return {"image_model": "flux2", "in_channels": 128, "out_channels": 128, "vec_in_dim": None,
            "context_in_dim": v["context_in_dim"], "hidden_size": v["hidden_size"], "mlp_ratio": 3.0,
            "num_heads": v["hidden_size"] // sum(axes), "depth": v["depth"],
            "depth_single_blocks": v["depth_single_blocks"], "axes_dim": axes, "theta": 2000, "patch_size": 1,
            "qkv_bias": False, "guidance_embed": v["guidance_embed"], "txt_ids_dims": [3],
            "global_modulation": True, "mlp_silu_act": True, "ops_bias": False, "default_ref_method": "index",
            "ref_index_scale": 10.0, "yak_mlp": False, "txt_norm": False}


def is_flux2(family):
    return family in FLUX2_VARIANTS


def sd3_config(tiny):
    depth = 3 if tiny else 38
    context = 64 if tiny else 4096
    pos = 32 if tiny else 192
    # What comfy.model_detection derives from the SD3.5-large checkpoint.
    return {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": depth, "input_size": None,
            "adm_in_channels": 32 if tiny else 2048,
            "context_embedder_config": {"target": "torch.nn.Linear",
                                        "params": {"in_features": context, "out_features": 64 * depth}},
            "num_patches": pos * pos, "pos_embed_max_size": pos, "qk_norm": "rms",
            "pos_embed_scaling_factor": None, "x_block_self_attn_layers": []}


def qwen_config(tiny):
    """What comfy.model_detection derives from a Qwen-Image checkpoint (60 blocks, 24 heads of 128, Qwen2.5-VL 3584)."""
    return {"image_model": "qwen_image", "patch_size": 2, "in_channels": 64, "out_channels": 16,
            "num_layers": 3 if tiny else 60, "attention_head_dim": 32 if tiny else 128,
            "num_attention_heads": 2 if tiny else 24, "joint_attention_dim": 64 if tiny else 3584,
            "axes_dims_rope": (8, 12, 12) if tiny else (16, 56, 56)}


def hidream_config(tiny):
    """What comfy.model_detection derives from a HiDream-I1 checkpoint (16 dual + 32 single blocks, 20 heads of
    128, 4 routed experts with 2 active, T5 and Llama-3.1 captions 4096 wide)."""
    layers, single = (3, 1) if tiny else (16, 32)
    return {"image_model": "hidream", "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": layers,
            "num_single_layers": single, "attention_head_dim": 32 if tiny else 128,
            "num_attention_heads": 2 if tiny else 20, "caption_channels": [64 if tiny else 4096, 4096],
            "text_emb_dim": 2048, "num_routed_experts": 4, "num_activated_experts": 2,
            "axes_dims_rope": [16, 8, 8] if tiny else [64, 32, 32], "max_resolution": [128, 128],
            "llama_layers": list(range(layers + single)) if tiny else list(range(32)) + [31] * 16}


def cogvideox_config(tiny):
    """What comfy.model_detection derives from the CogVideoX-5B (text-to-video) checkpoint: 42 blocks of 48 heads
    of 64 (head width fixed by the detection), T5-XXL 4096, RoPE positions."""
    return {"image_model": "cogvideox", "num_attention_heads": 2 if tiny else 48, "attention_head_dim": 64,
            "time_embed_dim": 64 if tiny else 512, "num_layers": 3 if tiny else 42, "in_channels": 16,
            "patch_size": 2, "text_embed_dim": 64 if tiny else 4096, "use_learned_positional_embeddings": False,
            "use_rotary_positional_embeddings": True}


def zimage_config(tiny):
    """What comfy.model_detection derives from the Z-Image (Turbo) checkpoint: NextDiT 3840 wide, 30 layers of 30
    heads of 128, Qwen3-4B states 2560 wide, captions padded to a multiple of 32."""
    # Tiny: 256 wide at least (Z-Image's modulation reads a 256-wide timestep embedding), 2 heads of 128.
    return {"image_model": "lumina2", "patch_size": 2, "in_channels": 16, "dim": 256 if tiny else 3840,
            "cap_feat_dim": 64 if tiny else 2560, "n_layers": 3 if tiny else 30, "qk_norm": True,
            "n_heads": 2 if tiny else 30, "n_kv_heads": 2 if tiny else 30,
            "axes_dims": [32, 48, 48], "axes_lens": [1536, 512, 512], "rope_theta": 256.0,
            "ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True, "time_scale": 1000.0,
            "pad_tokens_multiple": 32}


def hv15_config(tiny):
    """What comfy.model_detection derives from the HunyuanVideo 1.5 720p checkpoint: 54 dual-stream blocks of 16 heads
    of 128, patch 1, Qwen2.5-VL states 3584 wide (+ byT5), the image condition and mask as 33 extra channels."""
    return {"image_model": "hunyuan_video", "in_channels": 65, "patch_size": [1, 1, 1], "out_channels": 32,
            "vec_in_dim": None, "axes_dim": [16, 56, 56] if not tiny else [8, 12, 12], "meanflow": False,
            "context_in_dim": 64 if tiny else 3584, "hidden_size": 64 if tiny else 2048, "mlp_ratio": 4.0,
            "num_heads": 2 if tiny else 16, "depth": 3 if tiny else 54, "depth_single_blocks": 0, "theta": 256,
            "qkv_bias": True, "byt5": True, "guidance_embed": False, "use_cond_type_embedding": True,
            "vision_in_dim": 1152, "meanflow_sum": True}


def krea2_config(tiny):
    """Krea 2 as ComfyUI builds it (SingleStreamDiT's defaults, which model_detection reads back from the checkpoint's
    shapes): 28 blocks 6144 wide, 48 query heads and 12 key/value heads of 128, Qwen3-VL-4B's 12 tapped layers of
    2560."""
    if tiny:
        return {"image_model": "krea2", "features": 256, "channels": 16, "patch": 2, "layers": 3, "heads": 2,
                "kvheads": 1, "txtlayers": 2, "txtdim": 64, "txtheads": 2, "txtkvheads": 2}
    return {"image_model": "krea2", "features": 6144, "channels": 16, "patch": 2, "layers": 28, "heads": 48,
            "kvheads": 12, "txtlayers": 12, "txtdim": 2560}


def minimax_config(tiny):
    """What comfy.model_detection derives from the checkpoint of the stock video_minimax_h3_i2v template,
    minimax_h3_fl2va_pruned_int8_convrot (932 keys): 50 blocks and a 2-block token refiner, hidden 5376
    (video_patch_proj), 24 video / 32 audio latent channels (the output heads), 56 heads of 128 (q_norm,
    qkv_proj 21504 rows), SwiGLU 14336 (fc1 28672 rows), Qwen3-VL states 5120 wide (condition_proj), 16 RoPE
    frequencies per axis (96 of each head's 128 channels rotate), and the "pruned" curve-form adaLN: an
    adaln_t_table [1025, 8] buffer replaces the time embedder (adaln_curve_grid 1025, time_embed_dim 8: every
    block's adaln_proj is Linear(8, 6 x 5376 x 3)). The other constructor arguments are the model's defaults
    (which are the release's transformer/config.json: eps 1e-5, sigma shift 12 video / 3 audio).
    The released unpruned bf16 form (time embedder, adaLN from 2688) would add ~13 B parameters of adaLN
    weights that run on a handful of rows per block: the same step time, ~26 GB more weights."""
    if tiny:
        # As tests/comfy/tiny/tiny_minimax.py, in the curve form: 2 heads of 32 (RoPE on 3 x 2 x 4 = 24 of 32).
        return {"image_model": "minimax_h3", "num_layers": 3, "token_refiner_num_layers": 2, "hidden_size": 64,
                "latents_dim": 24, "audio_latents_dim": 32, "attention_head_dim": 32, "num_attention_heads": 2,
                "ffn_hidden_size": 96, "text_dim": 64, "adaln_curve_grid": 17, "time_embed_dim": 8,
                "rope_inv_freq_len": 4}
    return {"image_model": "minimax_h3", "num_layers": 50, "token_refiner_num_layers": 2, "hidden_size": 5376,
            "latents_dim": 24, "audio_latents_dim": 32, "attention_head_dim": 128, "num_attention_heads": 56,
            "ffn_hidden_size": 14336, "text_dim": 5120, "adaln_curve_grid": 1025, "time_embed_dim": 8,
            "rope_inv_freq_len": 16}


def wan_config(tiny):
    """What comfy.model_detection derives from a Wan 2.2 14B text-to-video expert (either of the two): 40 blocks 5120
    wide, 40 heads of 128, FFN 13824, UMT5-XXL states 4096 wide, 16 latent channels, 1x2x2 patches."""
    return {"image_model": "wan2.1", "model_type": "t2v", "dim": 64 if tiny else 5120, "out_dim": 16,
            "num_heads": 2 if tiny else 40, "ffn_dim": 96 if tiny else 13824, "num_layers": 3 if tiny else 40,
            "patch_size": (1, 2, 2), "freq_dim": 256, "window_size": (-1, -1), "qk_norm": True,
            "cross_attn_norm": True, "eps": 1e-6, "in_dim": 16, "text_dim": 64 if tiny else 4096}


OTHER_CONFIGS = {"qwen": (lambda tiny: comfy.supported_models.QwenImage(qwen_config(tiny))),
                 "hidream": (lambda tiny: comfy.supported_models.HiDream(hidream_config(tiny))),
                 "cogvideox": (lambda tiny: comfy.supported_models.CogVideoX_T2V(cogvideox_config(tiny))),
                 "zimage": (lambda tiny: comfy.supported_models.ZImage(zimage_config(tiny))),
                 "hv15": (lambda tiny: comfy.supported_models.HunyuanVideo15(hv15_config(tiny))),
                 "krea2": (lambda tiny: comfy.supported_models.Krea2(krea2_config(tiny))),
                 "minimax": (lambda tiny: comfy.supported_models.MiniMaxH3(minimax_config(tiny))),
                 "wan": (lambda tiny: comfy.supported_models.WAN21_T2V(wan_config(tiny)))}
# Flux-class models, Z-Image Turbo and MiniMax H3 (guidance-distilled; its template samples with BasicGuider): cfg 1.
CFG = {"qwen": 4.0, "hidream": 5.0, "sd3": 4.5, "cogvideox": 6.0, "hv15": 6.0, "krea2": 4.0, "wan": 3.5}
# Video models: latent (channels, spatial downscale), and the clip each is timed on (WxHxframes, their defaults).
VIDEO_LATENTS = {"cogvideox": (16, 8), "hv15": (32, 16), "wan": (16, 8)}
# MiniMax H3: the video_minimax_h3_i2v template's defaults (1344x768, 5 s at 24 fps snapped to the 17k + 5 grid: 124
# frames); its latent is a [video, audio] NestedTensor (minimax_latent), not VIDEO_LATENTS'.
# Wan 2.2 14B: the video_wan2_2_14B_t2v template's EmptyHunyuanLatentVideo (640x640, 81 frames).
VIDEO_RESOLUTIONS = {"cogvideox": "720x480x49", "hv15": "848x480x61", "minimax": "1344x768x124",
                     "wan": "640x640x81"}
# Text states per model: (tokens, width) of a prompt's conditioning, no pooled vector.
# MiniMax H3: Qwen3-VL layer-50 states of the raw prompt (no template, no padding): 256 tokens, a multi-shot prompt
# with its audio line as the template's.
TEXT_STATES = {"cogvideox": (226, 4096), "zimage": (128, 2560), "hv15": (128, 3584), "krea2": (128, 12 * 2560),
               "minimax": (256, 5120), "wan": (512, 4096)}  # Wan: UMT5-XXL states padded to 512 tokens


@torch.no_grad()
def randomize_(module, std=0.02, seed=0):
    """comfy ops leave weights uninitialised: fill parameters and float buffers in place, on their device."""
    generators = {}  # one per device: a model may keep a few tensors off the GPU
    named = list(module.named_parameters()) + [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
    for name, t in named:
        if t.device not in generators:
            generators[t.device] = torch.Generator(device=t.device).manual_seed(seed)
        mean = 1.0 if (name.endswith("norm.weight") or name.endswith("norm.scale") or ".ln_" in name
                       or name.endswith("_norm.weight")) else 0.0
        t.normal_(mean, std, generator=generators[t.device])


def build_model(family, tiny):
    if family == "flux":
        config = comfy.supported_models.Flux(flux_config(tiny))
    elif is_flux2(family):
        config = comfy.supported_models.Flux2(flux2_config(family, tiny))
    elif family in OTHER_CONFIGS:
        config = OTHER_CONFIGS[family](tiny)
    else:
        config = comfy.supported_models.SD3(sd3_config(tiny))
    config.set_inference_dtype(DTYPE, None)
    model = config.get_model({}, device=DEVICE)
    randomize_(model.diffusion_model)
    if family == "minimax":
        # The checkpoint's rope.inv_freq buffer: 10000^(-i/n) (random values would do for speed; these keep the
        # positions those of the real model).
        inv = model.diffusion_model.rope.inv_freq
        inv.copy_(1.0 / 10000.0 ** (torch.arange(inv.shape[0], dtype=torch.float32, device=inv.device) / inv.shape[0]))
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=DEVICE, offload_device=torch.device("cpu"))
    if CUDA:
        # The weights were made on the GPU, so ComfyUI's free-memory estimate at the first sampling call
        # would not count them as loaded: a model larger than the memory left beside it (Flux.2-dev, 60 GiB on
        # an 80 GB card) would be loaded partially (lowvram casts). Register it as fully loaded, as ComfyUI
        # loads such a model from the CPU when it fits; later calls find it loaded and keep it so.
        comfy.model_management.load_models_gpu([patcher], force_full_load=True)
    dm = model.diffusion_model
    n_blocks = detect_family(dm).block_counts(dm)[0]
    params = sum(p.numel() for p in dm.parameters())
    return patcher, n_blocks, params


def context_dim(model):
    dm = model.model.diffusion_model
    return detect_family(dm).context_dim(dm)


def conditioning(family, tiny, seed):
    g = torch.Generator().manual_seed(seed)
    if is_flux2(family):
        # LLM text states padded to 512 tokens; no pooled vector (vec_in_dim None).
        ctx = flux2_config(family, tiny)["context_in_dim"]
        return [[torch.randn(1, 16 if tiny else 512, ctx, generator=g), {}]]
    if family == "qwen":
        # Qwen2.5-VL states of a prompt (the system prompt cut off); no pooled vector.
        return [[torch.randn(1, 16 if tiny else 128, 64 if tiny else 3584, generator=g), {}]]
    if family in TEXT_STATES:
        tokens, width = TEXT_STATES[family]
        tokens = 16 if tiny else tokens
        # HunyuanVideo 1.5's text encoders give no pooled vector, but the model reads the key.
        extras = {"pooled_output": None} if family == "hv15" else {}
        if family == "minimax":
            # MiniMax H3's text encoder returns each token's modality tag (1: text; an image prompt's vision pads: 0).
            extras = {"minimax_token_tags": torch.ones(tokens, dtype=torch.long)}
        tiny_width = 128 if family == "krea2" else 64  # Krea 2 packs its 2 tiny tapped layers of 64
        return [[torch.randn(1, tokens, tiny_width if tiny else width, generator=g), extras]]
    if family == "hidream":
        # T5 states (128 tokens), pooled CLIP-L+G, and Llama-3.1's 32 hidden layers of 128 tokens.
        t5 = torch.randn(1, 128, 64 if tiny else 4096, generator=g)
        llama = torch.randn(1, 32, 16 if tiny else 128, 4096, generator=g)
        return [[t5, {"pooled_output": torch.randn(1, 2048, generator=g), "conditioning_llama3": llama}]]
    if family == "flux":
        tokens, ctx, pooled = (16, 64, 32) if tiny else (512, 4096, 768)
    else:
        tokens, ctx, pooled = (20, 64, 32) if tiny else (154, 4096, 2048)
    return [[torch.randn(1, tokens, ctx, generator=g), {"pooled_output": torch.randn(1, pooled, generator=g)}]]


def concept_set(r, dim, seed=0, family=None):
    g = torch.Generator().manual_seed(seed)
    extra = {}
    if family == "qwen":
        # Qwen-Image numbers text tokens too: a concept sits where its own tokens sat in its conditioning.
        extra = {"positions": torch.full((r,), 1.0), "cond_lengths": torch.full((r,), 4, dtype=torch.int64)}
    if family in ("zimage", "krea2", "hv15", "minimax"):
        # LLM text encoders: a concept sits where its own tokens sat in its conditioning.
        extra = {"positions": torch.full((r,), 12.0), "cond_lengths": torch.full((r,), 20, dtype=torch.int64)}
    if is_flux2(family or ""):
        # Flux.2 places text tokens by RoPE position (axis 3): a concept carries where its own tokens sat in
        # its own conditioning and that conditioning's length (dev: short, left-padded to 512; Klein: 512).
        extra = {"positions": torch.full((r,), 10.0),
                 "cond_lengths": torch.full((r,), 20 if family == "flux2dev" else 512, dtype=torch.int64)}
    return ConceptSet(names=[f"c{i}" for i in range(r)], embeddings=torch.randn(r, dim, generator=g),
                      pooling="mean", encoder="random", empty_prompt=None, **extra)


def other_name(module: str, flat_module: str, name: str):
    """`name` of the --compare-with pack's concept_patch, in the folder layout or the older flat one."""
    import importlib

    try:
        return getattr(importlib.import_module(f"concept_attention_other.concept_patch.{module}"), name)
    except ImportError:
        return getattr(importlib.import_module(f"concept_attention_other.concept_patch.{flat_module}"), name)


def other_pack_model(model, n_blocks, ctx, family=None):
    """`model` patched by the pack at --compare-with (8 concepts, all blocks), for an A/B in one process."""
    import_pack("concept_attention_other", os.path.abspath(ARGS.compare_with))
    other_install = other_name("generation", "session", "install_concept_attention")
    OtherOptions = other_name("stream.options", "options", "SaliencyOptions")
    OtherConceptSet = other_name("text.concepts", "concepts", "ConceptSet")

    mine = concept_set(8, ctx, family=family)
    extra = {k: getattr(mine, k) for k in ("positions", "cond_lengths") if getattr(mine, k, None) is not None}
    concepts = OtherConceptSet(names=mine.names, embeddings=mine.embeddings, pooling="mean", encoder="random",
                               empty_prompt=None, **extra)
    return other_install(model, concepts, OtherOptions(layers=tuple(range(n_blocks))))[0]


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------

def reset_peak():
    if CUDA:
        sync()
        torch.cuda.reset_peak_memory_stats()


def mem_now():
    return torch.cuda.memory_allocated() if CUDA else 0


def mem_peak():
    return torch.cuda.max_memory_allocated() if CUDA else 0


@contextlib.contextmanager
def diagnostic_mode(name):
    """--diagnose variants: skip the concept update, or the concept attention and map, while timing."""
    from concept_attention.concept_patch.maths.attention import heads_to_flat

    saved = FluxDoubleBlocks.update, JointBlocks.update, ca_capture.AttentionCapture._read_joint_call
    if name.endswith("_no_update"):
        FluxDoubleBlocks.update = JointBlocks.update = lambda self, block, concepts, out, saved: concepts
    elif name.endswith("_no_attention"):
        def value_only(self, args, kwargs, out):
            self.concept_out = heads_to_flat(self.concept_v)
        ca_capture.AttentionCapture._read_joint_call = value_only
    try:
        yield
    finally:
        FluxDoubleBlocks.update, JointBlocks.update, ca_capture.AttentionCapture._read_joint_call = saved


def run_sample(model, latent, pos, neg, cfg, steps, seed=0):
    noise = comfy.sample.prepare_noise(latent, seed)
    sync()
    t0 = time.perf_counter()
    out = comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", pos, neg, latent,
                              seed=seed, disable_pbar=True)
    sync()
    return time.perf_counter() - t0, out


def one_model_call(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """k-diffusion style 'sampler' that evaluates the model once at sigmas[0]."""
    extra_args = extra_args or {}
    model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
    return x


class _Stop(Exception):
    pass


def _raise_stop(args, extra):
    raise _Stop()


def _catch_stop(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
    try:
        return executor(x, t, c_concat, c_crossattn, control, {} if transformer_options is None else transformer_options,
                        **kwargs)
    except _Stop:
        return x


def plain_forward_model(model, family, n_blocks, stop_after):
    """Clone of `model` whose forward ends right after dual-stream block `stop_after` (None: full forward)."""
    m = model.clone()
    if stop_after is None:
        return m
    if stop_after + 1 < n_blocks:
        m.set_model_patch_replace(_raise_stop, "dit", "double_block", stop_after + 1)
    elif family in FLUX_CLASS:
        m.set_model_patch_replace(_raise_stop, "dit", "single_block", 0)
    else:
        return m  # SD3: the last joint block is the end of the transformer (only the final layer follows)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "bench_stop", _catch_stop)
    return m


def time_one_forward(model, latent, pos, seed=0):
    """One plain model call, timed with the same setup encode_saliency times (guider, seeded noise)."""
    sync()
    t0 = time.perf_counter()
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": pos})
    guider.set_cfg(1.0)
    sampler = comfy.samplers.KSAMPLER(one_model_call)
    sigmas = torch.tensor([0.5, 0.0], dtype=torch.float32)
    noise = comfy.sample.prepare_noise(latent, seed)
    guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=seed)
    sync()
    return time.perf_counter() - t0


def time_encode(model, concepts, latent, layers, pos, seed=0):
    sync()
    t0 = time.perf_counter()
    sal = encode_saliency(model, concepts, latent, SaliencyOptions(layers=tuple(layers)), conditioning=pos, seed=seed)
    sync()
    return time.perf_counter() - t0, sal


def mib(b):
    return round(b / 2**20, 1)


def pct(a, b):
    return round(100.0 * (a / b - 1.0), 2) if b else None


# ----------------------------------------------------------------------------------------------
# Sync counting
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def count_syncs():
    """Records every synchronising CUDA call (sync debug mode 'warn') with the Python file and line that made it."""
    found = []
    if not CUDA:
        yield found
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message).lower():
            found.append(f"{os.path.relpath(w.filename, REPO) if w.filename.startswith(REPO) else w.filename}:{w.lineno}")


def summarize_syncs(found):
    ours = [f for f in found if f.startswith("concept_patch") or f.startswith("nodes")]
    by_loc = {}
    for f in found:
        by_loc[f] = by_loc.get(f, 0) + 1
    return {"total": len(found), "ours": len(ours), "by_location": dict(sorted(by_loc.items(), key=lambda kv: -kv[1]))}


# ----------------------------------------------------------------------------------------------
# Profiler instrumentation (benchmark side only: wraps our functions in record_function ranges)
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def instrument_ours():
    targets = [
        (FluxFamily, "prepare_forward", "ca::prepare_forward"),
        (FluxDoubleBlocks, "qkv", "ca::concept_qkv"),
        (FluxDoubleBlocks, "update", "ca::update"),
        (Flux2Family, "text_modulation", "ca::text_modulation"),
        (MiniMaxBlocks, "qkv", "ca::concept_qkv"),
        (MiniMaxBlocks, "update", "ca::update"),
        (JointBlocks, "qkv", "ca::concept_qkv"),
        (JointBlocks, "update", "ca::update"),
        (ca_capture, "concept_attention", "ca::concept_attention"),
        (ca_capture, "dot_scores", "ca::scores(bmm)"),
        (ca_capture, "head_dot_scores", "ca::scores(per-head bmm)"),
        (ca_capture.AttentionCapture, "_read_joint_call", "ca::read_joint_call(total: slices+sdpa+scores)"),
        (ca_forward.ForwardState, "start_concepts", "ca::start_concepts"),
        (ca_forward.ForwardState, "add_layer_scores", "ca::add_layer_scores"),
        (ca_run.SamplingRun, "commit", "ca::commit"),
    ]
    saved = []
    for owner, name, label in targets:
        fn = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if fn is None:
            continue

        def make(fn=fn, label=label):
            @functools.wraps(fn)
            def wrapped(*a, **k):
                with torch.profiler.record_function(label):
                    return fn(*a, **k)
            return wrapped
        saved.append((owner, name, fn))
        setattr(owner, name, make())
    try:
        yield
    finally:
        for owner, name, fn in reversed(saved):
            setattr(owner, name, fn)


def _first_attr(evt, *names):
    for n in names:
        v = getattr(evt, n, None)
        if v is not None:
            return v
    return 0.0


def _device_total(evt):
    return _first_attr(evt, "device_time_total", "cuda_time_total")


def _device_self(evt):
    return _first_attr(evt, "self_device_time_total", "self_cuda_time_total")


def profile_steps(model, latent, pos, neg, cfg, steps, label, out_dir):
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if CUDA else [])
    with instrument_ours():
        run_sample(model, latent, pos, neg, cfg, 1)  # warm
        with torch.profiler.profile(activities=acts) as prof:
            wall, _ = run_sample(model, latent, pos, neg, cfg, steps)
    ka = prof.key_averages()
    ours = {}
    for e in ka:
        if e.key.startswith("ca::"):
            # Each range shows up twice: the CPU-side range and its GPU-side annotation.
            side = "cpu range" if e.cpu_time_total > 0 else "gpu annotation"
            ours[f"{e.key} [{side}]"] = {"calls": e.count, "cpu_total_ms": round(e.cpu_time_total / 1e3, 3),
                           "device_total_ms": round(_device_total(e) / 1e3, 3)}
    self_dev = {e.key: _device_self(e) for e in ka if not e.key.startswith("ca::")}
    kernel_us = sum(self_dev.values())
    sort_key = "device_time_total" if CUDA else "cpu_time_total"
    try:
        table = ka.table(sort_by=sort_key, row_limit=60)
    except Exception:
        table = ka.table(sort_by="cuda_time_total" if CUDA else "cpu_time_total", row_limit=60)
    with open(os.path.join(out_dir, "profiles.txt"), "a") as f:
        f.write(f"\n===== {label}: {steps} sampling steps (plus the sampler's fixed work) =====\n{table}\n")
    return {"steps": steps, "wall_ms_with_profiler": round(1e3 * wall, 1), "ours": ours,
            "kernel_ms_per_step": round(kernel_us / 1e3 / steps, 3),
            "self_device_ms_per_step": {k: round(v / 1e3 / steps, 4) for k, v in self_dev.items() if v > 0}}


def profile_diff(plain, patched, top=25):
    """Ops whose device time per step grew most from plain to patched."""
    a, b = plain["self_device_ms_per_step"], patched["self_device_ms_per_step"]
    diff = {k: round(b.get(k, 0.0) - a.get(k, 0.0), 4) for k in set(a) | set(b)}
    return dict(sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top])



# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def env_info():
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(DEVICE),
            "comfyui": COMFYUI, "argv": sys.argv, "tiny": ARGS.tiny,
            "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
    try:
        import comfyui_version
        info["comfyui_version"] = comfyui_version.__version__
    except Exception:
        pass
    if CUDA:
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_total_mib"] = mib(torch.cuda.get_device_properties(0).total_memory)
        info["cuda"] = torch.version.cuda
    try:
        info["repo_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                                             text=True).stdout.strip()
        info["repo_dirty"] = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "concept_patch",
                                             "nodes", "__init__.py"], capture_output=True, text=True).stdout.strip()
    except Exception:
        pass
    try:
        # Which product code ran (the work tree may hold uncommitted changes): one hash over concept_patch/*.
        import hashlib

        h = hashlib.sha256()
        for root, dirs, files in sorted(os.walk(PACK_DIR)):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".py"):
                    with open(os.path.join(root, name), "rb") as f:
                        h.update(os.path.relpath(os.path.join(root, name), REPO).encode() + b"\0" + f.read())
        info["concept_patch_sha256"] = h.hexdigest()[:16]
    except Exception:
        pass
    return info


def over_budget():
    return time.monotonic() - T_START > ARGS.budget_s


def minimax_latent(w, h, frames):
    """MiniMax H3's empty latent as comfy_extras.nodes_minimax_h3 makes it (EmptyMiniMaxH3LatentAV,
    MiniMaxH3ImageToVideo): the frame count snapped up to the 17k + 5 grid at 24 fps, latent frames 1, 4, 4, 4, 4
    pictures each, 40 audio latent frames a second, stereo: NestedTensor [video [1, 24, T, H/16, W/16], audio
    [1, 32, 2, A]] (1344x768x124: T 37, 84x48, A 207)."""
    import comfy.nested_tensor

    frames = max(5, frames)
    frames += (5 - frames) % 17
    latent_t = 2 if frames <= 5 else (frames - 5) // 17 * 5 + 2
    audio_t = round(frames / 24 * 40)
    return comfy.nested_tensor.NestedTensor((torch.zeros(1, 24, latent_t, h // 16, w // 16),
                                             torch.zeros(1, 32, 2, audio_t)))


def latent_for(res, tiny, family="flux"):
    """The latent of a WxH picture, or of a WxHxF clip (F pixel frames) for a video model."""
    w, h, *frames = (int(v) for v in res.lower().split("x"))
    if tiny:
        w, h = w // 8, h // 8  # 128x128 / 192x128 pixels -> 16x16 / 24x16 latent (Flux.2: 8x8 / 12x8)
    if family == "minimax":
        # No frame count: the template's 124. Tiny: at most 22 frames (7 latent frames, 37 audio frames).
        frames = frames[0] if frames else 124
        return minimax_latent(w, h, min(frames, 22) if tiny else frames)
    if family in VIDEO_LATENTS:
        channels, down = VIDEO_LATENTS[family]
        t = ((frames[0] if frames else 1) - 1) // 4 + 1  # causal video VAEs: 1 + 4k frames -> 1 + k latents
        return torch.zeros(1, channels, t if not tiny else min(t, 3), h // down, w // down)
    if is_flux2(family):
        # Flux.2's VAE: 128 channels at 16x downscale (comfy.latent_formats.Flux2); patch 1 in the DiT.
        return torch.zeros(1, 128, h // 16, w // 16)
    if family == "qwen":
        return torch.zeros(1, 16, 1, h // 8, w // 8)  # the Wan 2.1 VAE's one-frame latent
    return torch.zeros(1, 16, h // 8, w // 8)


def random_latent(res, tiny, family, seed=3):
    """A random latent (an encoded picture or clip) of latent_for's shape; every stream of a nested one."""
    latent = latent_for(res, tiny, family)
    g = torch.Generator().manual_seed(seed)
    if getattr(latent, "is_nested", False):
        import comfy.nested_tensor

        return comfy.nested_tensor.NestedTensor([torch.randn(t.shape, generator=g) for t in latent.unbind()])
    return torch.randn(latent.shape, generator=g)


def streams(latent):
    """The tensors of a latent: the streams of a NestedTensor (MiniMax H3: video, audio), else the latent."""
    return list(latent.unbind()) if getattr(latent, "is_nested", False) else [latent]


def bit_equal(a, b):
    sa, sb = streams(a), streams(b)
    return len(sa) == len(sb) and all(torch.equal(x, y) for x, y in zip(sa, sb))


def bench_family(family, results, out_dir, save, resolutions, extras):
    tiny = ARGS.tiny
    fam_res = results.setdefault("models", {}).setdefault(family, {})
    log(f"building {family}")
    sync()
    t0 = time.perf_counter()
    model, n_blocks, params = build_model(family, tiny)
    sync()
    fam_res["build_s"] = round(time.perf_counter() - t0, 1)
    fam_res["params"] = params
    fam_res["dual_stream_blocks"] = n_blocks
    dm = model.model.diffusion_model
    if family in FLUX_CLASS or family == "minimax":
        if family in FLUX_CLASS:
            fam_res["single_stream_blocks"] = len(dm.single_blocks)
        fam_res["unet_config"] = {k: v for k, v in model.model.model_config.unet_config.items()
                                  if isinstance(v, (int, float, str, bool, list, type(None)))}
    fam_res["weights_mib"] = mib(mem_now())
    # The node's default block choice, "last 10", on this model (Flux.2: every one of its 8 double blocks).
    fam_res["default_layers"] = parse_block_spec("last 10", n_blocks).layers
    ctx = context_dim(model)
    # Flux.1-dev and Flux.2-dev are guidance-distilled (cfg 1, conditional rows only); Flux.2-Klein-9B is
    # the distilled 4-step release, also sampled at cfg 1 (its undistilled base would batch cond + uncond).
    # SD3.5, Qwen-Image and HiDream-I1 full batch cond + uncond (their templates' cfg).
    cfg = CFG.get(family, 1.0)
    fam_res["cfg"] = cfg
    pos, neg = conditioning(family, tiny, 1), conditioning(family, tiny, 2)
    rs = [int(r) for r in ARGS.concepts.split(",") if r]
    all_layers = SaliencyOptions(layers=tuple(range(n_blocks)))
    variants = {"plain": model}
    for r in rs:
        patched, _session = install_concept_attention(model, concept_set(r, ctx, family=family), all_layers)
        variants[f"ca_r{r}"] = patched
    if ARGS.compare_with:
        variants["ca_r8_other"] = other_pack_model(model, n_blocks, ctx, family)
    if ARGS.diagnose:
        for part in ("no_update", "no_attention"):
            variants[f"ca_r8_{part}"] = install_concept_attention(model, concept_set(8, ctx, family=family), all_layers)[0]
    if ARGS.last10:
        last = SaliencyOptions(layers=tuple(range(max(0, n_blocks - 10), n_blocks)))
        variants["ca_r8_last10"] = install_concept_attention(model, concept_set(8, ctx, family=family), last)[0]
    log(f"{family}: {params / 1e9:.2f}B params, {n_blocks} dual-stream blocks, build {fam_res['build_s']}s, "
        f"weights {mib(mem_now())} MiB")

    N, M = ARGS.steps, ARGS.short_steps
    for res in resolutions:
        if over_budget():
            log("budget reached: skipping", family, res)
            break
        latent = latent_for(res, tiny, family)
        key = f"gen_{res}"
        gen = fam_res.setdefault(key, {"latent": list(latent.shape), "steps_long": N, "steps_short": M,
                                       "variants": {}})
        if getattr(latent, "is_nested", False):
            gen["latent_streams"] = [list(t.shape) for t in latent.unbind()]
        # warm-up: every variant once (first call loads the model and autotunes kernels)
        for name, m in variants.items():
            with diagnostic_mode(name):
                run_sample(m, latent, pos, neg, cfg, M)
        per_step = {name: [] for name in variants}
        peaks = {}
        outputs = {}
        for rep in range(ARGS.repeats):
            for name, m in variants.items():
                reset_peak()
                base = mem_now()
                with diagnostic_mode(name):
                    t_long, outputs[name] = run_sample(m, latent, pos, neg, cfg, N)
                    peak = mem_peak()
                    t_short, _ = run_sample(m, latent, pos, neg, cfg, M)
                per_step[name].append((t_long - t_short) / (N - M))
                if name not in peaks:
                    peaks[name] = (peak, base)
            log(f"{family} {res} rep {rep}: " + ", ".join(f"{n}={1e3 * v[-1]:.2f}ms" for n, v in per_step.items()))
        # The same seed after the warm-up runs: the picture must be the plain one, bit for bit.
        gen["bit_identical_to_plain"] = {name: bit_equal(out, outputs["plain"])
                                         for name, out in outputs.items() if name != "plain"}
        plain_ms = 1e3 * statistics.median(per_step["plain"])
        plain_peak, plain_base = peaks["plain"]
        for name in variants:
            ms = 1e3 * statistics.median(per_step[name])
            peak, base = peaks[name]
            gen["variants"][name] = {
                "step_ms_median": round(ms, 3), "step_ms_all": [round(1e3 * v, 3) for v in per_step[name]],
                "step_overhead_pct": pct(ms, plain_ms),
                "peak_mib": mib(peak), "peak_overhead_pct": pct(peak, plain_peak),
                "activation_peak_mib": mib(peak - base),
                "activation_peak_overhead_pct": pct(peak - base, plain_peak - plain_base),
            }
        save()

    # Encode mode vs one forward
    if extras and not ARGS.skip_encode and not over_budget():
        res = ARGS.resolutions.split(",")[0]
        latent = random_latent(res, tiny, family)
        concepts8 = concept_set(8, ctx, family=family)
        last_k = min(10, n_blocks)
        choices = {f"last {last_k} ({n_blocks - last_k}-{n_blocks - 1})": list(range(n_blocks - last_k, n_blocks)),
                   f"0-{n_blocks // 2}": list(range(0, n_blocks // 2 + 1))}
        enc = fam_res.setdefault(f"encode_{res}", {"concepts": 8, "choices": {}})
        full_model = plain_forward_model(model, family, n_blocks, None)
        stop_models = {label: plain_forward_model(model, family, n_blocks, layers[-1]) for label, layers in choices.items()}
        time_one_forward(full_model, latent, pos)  # warm
        for label, layers in choices.items():
            time_encode(model, concepts8, latent, layers, pos)
            time_one_forward(stop_models[label], latent, pos)
        t_full, t_enc, t_stop, peaks = [], {k: [] for k in choices}, {k: [] for k in choices}, {}
        for _ in range(ARGS.encode_repeats):
            reset_peak()
            t_full.append(time_one_forward(full_model, latent, pos))
            peaks.setdefault("full", mem_peak())
            for label, layers in choices.items():
                reset_peak()
                t, sal = time_encode(model, concepts8, latent, layers, pos)
                t_enc[label].append(t)
                peaks.setdefault(("enc", label), mem_peak())
                reset_peak()
                t_stop[label].append(time_one_forward(stop_models[label], latent, pos))
                peaks.setdefault(("stop", label), mem_peak())
        full_ms = 1e3 * statistics.median(t_full)
        enc["full_forward_ms"] = round(full_ms, 3)
        enc["full_forward_peak_mib"] = mib(peaks["full"])
        for label, layers in choices.items():
            e_ms, s_ms = 1e3 * statistics.median(t_enc[label]), 1e3 * statistics.median(t_stop[label])
            enc["choices"][label] = {
                "layers": [layers[0], layers[-1]], "encode_ms": round(e_ms, 3),
                "encode_ms_all": [round(1e3 * v, 3) for v in t_enc[label]],
                "plain_stopped_ms": round(s_ms, 3), "encode_vs_stopped_pct": pct(e_ms, s_ms),
                "encode_vs_full_pct": pct(e_ms, full_ms),
                "encode_peak_mib": mib(peaks[("enc", label)]), "stopped_peak_mib": mib(peaks[("stop", label)]),
            }
        log(f"{family} encode: full {full_ms:.1f}ms; " + "; ".join(
            f"{k}: enc {v['encode_ms']:.1f}ms vs stopped {v['plain_stopped_ms']:.1f}ms" for k, v in enc["choices"].items()))
        save()

    # Host-device syncs: plain vs patched, 2 and 4 steps (per-step increment = syncs inside the loop)
    if extras and not ARGS.skip_sync and not over_budget():
        latent = latent_for(ARGS.resolutions.split(",")[0], tiny, family)
        sy = fam_res.setdefault("syncs", {})
        for name in ("plain", f"ca_r{rs[min(1, len(rs) - 1)]}"):
            for steps in (2, 4):
                with count_syncs() as found:
                    run_sample(variants[name], latent, pos, neg, cfg, steps)
                sy[f"{name}_{steps}steps"] = summarize_syncs(found)
        # encode mode (one forward; everything it does is outside any loop)
        with count_syncs() as found:
            last10 = list(range(n_blocks - min(10, n_blocks), n_blocks))
            time_encode(model, concept_set(8, ctx, family=family), latent, last10, pos)
        sy["encode"] = summarize_syncs(found)
        log(f"{family} syncs: " + ", ".join(f"{k}: total {v['total']} ours {v['ours']}" for k, v in sy.items()))
        save()

    # Profiler
    if extras and ARGS.profile and not over_budget():
        res = ARGS.resolutions.split(",")[0]
        latent = latent_for(res, tiny, family)
        prof = fam_res.setdefault(f"profile_{res}", {})
        names = ("plain", f"ca_r{rs[min(1, len(rs) - 1)]}")
        for name in names:
            prof[name] = profile_steps(variants[name], latent, pos, neg, cfg, 3, f"{family}_{name}", out_dir)
        prof["top_device_ms_per_step_increase"] = profile_diff(prof[names[0]], prof[names[1]])
        for name in names:
            prof[name].pop("self_device_ms_per_step")
        log(f"{family} profile: " + json.dumps(prof)[:3000])
        save()

    # Unloading moves weights to the offload device; keep them on the GPU and just drop them.
    for m in variants.values():
        m.offload_device = DEVICE
    comfy.model_management.unload_all_models()
    del variants, model
    comfy.model_management.soft_empty_cache()
    import gc
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def bench_requery(family, results, save):
    """Re-query (new concepts on a picture already encoded: the concept stream alone over the kept image stream)
    against the encode that kept it, 8 concepts over the node's default blocks ("last 10"), and the bytes kept."""
    tiny = ARGS.tiny
    model, n_blocks, params = build_model(family, tiny)
    ctx = context_dim(model)
    res = ARGS.resolutions.split(",")[0]
    latent = random_latent(res, tiny, family)
    pos = conditioning(family, tiny, 1)
    layers = tuple(parse_block_spec("last 10", n_blocks).layers)
    first, second = concept_set(8, ctx, seed=1, family=family), concept_set(8, ctx, seed=2, family=family)
    cache = image_stream_cache.CACHE
    budget = 64 << 30

    def encode(concepts, cache_budget):
        sync()
        t0 = time.perf_counter()
        sal = encode_saliency(model, concepts, latent, SaliencyOptions(layers=layers), conditioning=pos,
                              cache_budget=cache_budget)
        sync()
        return time.perf_counter() - t0, sal

    # Concept lists of another count: the first re-query with a count runs eagerly and captures a CUDA graph.
    other_counts = [concept_set(r, ctx, seed=10 + r, family=family) for r in (5, 6, 7)]
    encode(first, 0)  # warm-up (loads the model, autotunes)
    cache.clear()
    encode(first, budget)
    encode(second, budget)  # warm-up of the re-query path (8 concepts: eager, then captured)
    t_plain, t_keep, t_requery, t_first_count = [], [], [], []
    for i in range(ARGS.encode_repeats):
        t_plain.append(encode(first, 0)[0])
        cache.clear()
        t_keep.append(encode(first, budget)[0])
        encode(second, budget)  # captures the 8-concept graph of this new entry
        t, sal = encode(first, budget)  # same count, other concepts: a graph replay
        assert sal.metadata["requery"] is True
        t_requery.append(t)
        t_first_count.append(encode(other_counts[i % len(other_counts)], budget)[0])
    full_second = encode(second, 0)[1]
    requeried_second = encode(second, budget)[1]
    graphs = [g for e in cache.entries.values() for f in e.forwards for g in f.graphs.values()]
    kept = [t for e in cache.entries.values() for f in e.forwards for t in f.tensors()]
    plain_ms, keep_ms, requery_ms, first_count_ms = (
        1e3 * statistics.median(v) for v in (t_plain, t_keep, t_requery, t_first_count))
    results.setdefault("requery", {})[family] = {
        "resolution": res, "layers": [layers[0], layers[-1]], "concepts": 8, "params": params,
        "encode_ms": round(plain_ms, 3), "encode_keeping_ms": round(keep_ms, 3), "requery_ms": round(requery_ms, 3),
        "requery_vs_encode_pct": round(100.0 * requery_ms / plain_ms, 2),
        "requery_new_count_ms": round(first_count_ms, 3),
        "requery_new_count_vs_encode_pct": round(100.0 * first_count_ms / plain_ms, 2),
        "requery_maps_equal_full_run": bool(torch.equal(requeried_second.maps, full_second.maps)),
        "graphs_in_use": sum(1 for g in graphs if not isinstance(g, str)), "graphs_refused": sum(
            1 for g in graphs if isinstance(g, str)),
        "keeping_overhead_pct": pct(keep_ms, plain_ms),
        "requery_ms_all": [round(1e3 * v, 3) for v in t_requery], "encode_ms_all": [round(1e3 * v, 3) for v in t_plain],
        "requery_new_count_ms_all": [round(1e3 * v, 3) for v in t_first_count],
        "cache_mib_per_picture": mib(cache.nbytes), "cache_device": str(kept[0].device) if kept else None,
    }
    log(f"{family} requery: " + json.dumps(results["requery"][family]))
    save()
    cache.clear()
    model.offload_device = DEVICE
    comfy.model_management.unload_all_models()
    model = None  # the encode closure above holds the name: drop the model, keep the name
    import gc
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def main():
    out_dir = ARGS.out
    os.makedirs(out_dir, exist_ok=True)
    results = {"env": env_info(), "args": vars(ARGS)}
    path = os.path.join(out_dir, "results_tiny.json" if ARGS.tiny else "results.json")

    def save():
        with open(path, "w") as f:
            json.dump(results, f, indent=1)

    log("env", json.dumps(results["env"]))
    resolutions = ARGS.resolutions.split(",")
    # First every model at the first resolution (with encode, sync and profiler sections), then the rest:
    # the targets are stated at the first resolution, so a time budget cuts the others first.
    models = [f for f in ARGS.models.split(",") if f]
    phases = [(f, resolutions[:1], True) for f in models]
    if len(resolutions) > 1:
        # Video models time their one clip (VIDEO_RESOLUTIONS) in the first phase already.
        phases += [(f, resolutions[1:], False) for f in models if f not in VIDEO_RESOLUTIONS]
    for family, res_list, extras in phases:
        if over_budget():
            log("budget reached: skipping", family, res_list)
            continue
        try:
            bench_family(family, results, out_dir, save,
                         [VIDEO_RESOLUTIONS[family]] if family in VIDEO_RESOLUTIONS else res_list, extras)
        except Exception:
            tb = traceback.format_exc()
            log(f"{family} FAILED\n{tb}")
            results.setdefault("errors", {})[family] = tb
            comfy.model_management.unload_all_models()
            if CUDA:
                torch.cuda.empty_cache()
        save()
    for family in [f for f in ARGS.requery.split(",") if f]:
        if over_budget():
            log("budget reached: skipping re-query", family)
            continue
        try:
            bench_requery(family, results, save)
        except Exception:
            tb = traceback.format_exc()
            log(f"{family} re-query FAILED\n{tb}")
            results.setdefault("errors", {})[f"requery_{family}"] = tb
            comfy.model_management.unload_all_models()
        save()
    results["elapsed_s"] = round(time.monotonic() - T_START, 1)
    save()
    log("wrote", path)


if __name__ == "__main__":
    # ComfyUI runs every node under inference mode; so do we (no autograd graph, same kernels).
    with torch.inference_mode():
        main()
