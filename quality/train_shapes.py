"""Trains the shapes model (quality/shapes_model.py) on the synthetic world, on the GPU or the CPU.

Rectified flow as ComfyUI samples Chroma Radiance: z_t = (1 - t)·x0 + t·ε with t ~ logit-normal(0, 1), the network
predicts v = ε - x0 from (z_t, t, caption states); 10 % of captions are dropped to the empty prompt so
classifier-free guidance works. AdamW with warm-up and cosine decay, gradient clipping, an EMA of the weights (what
is saved). Batches hold captions of one token length (ComfyUI feeds Chroma's T5 states unpadded).

    python -m quality.train_shapes --preset cpu --out quality/weights        # the shipped model
    python -m quality.train_shapes --preset gpu --device cuda --out OUT

Writes NAME.safetensors (weights and config), NAME.train.json (command, seed, loss curve, time, device) and
NAME.samples.png (pictures the trained model generates from held-out captions, through ComfyUI's sampler).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

# Picture size, model width and schedule per preset. "cpu" fits about an hour of two CPU cores.
PRESETS = {
    "cpu": {"size": 32, "patch_size": 4, "hidden_size": 128, "num_heads": 4, "depth": 4, "depth_single_blocks": 2,
            "steps": 4000, "batch": 32, "lr": 4e-4, "dataset": 40000},
    "gpu": {"size": 64, "patch_size": 4, "hidden_size": 256, "num_heads": 8, "depth": 6, "depth_single_blocks": 2,
            "steps": 12000, "batch": 128, "lr": 3e-4, "dataset": 100000},
}
CAPTION_DROPOUT = 0.1
EMA_DECAY = 0.999
WARMUP_STEPS = 200
TRAIN_SEED, SAMPLE_SEED = 1, 2  # the training set's seed; held-out captions for the sample sheet


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights"))
    p.add_argument("--name", default="shapes_radiance")
    p.add_argument("--seed", type=int, default=0, help="weights' initialisation and the batches' order")
    p.add_argument("--steps", type=int, help="override the preset's step count")
    p.add_argument("--minutes", type=float, help="a time budget: training ends when it is spent (or at --steps), "
                   "the learning-rate schedule following whichever comes first")
    p.add_argument("--dataset", type=int, help="override the preset's number of training pictures")
    p.add_argument("--sample-sheet", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--log-every", type=int, default=50)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from .comfy_setup import setup_comfyui

    setup_comfyui(cpu=args.device == "cpu")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = dict(PRESETS[args.preset])
    preset["dataset"] = args.dataset or preset["dataset"]
    steps = args.steps or preset["steps"]
    device = torch.device(args.device)
    result = train(preset, steps, args.seed, device, args.log_every, args.minutes)
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, args.name)
    info = {"command": "python -m quality.train_shapes " + " ".join(sys.argv[1:] if argv is None else argv),
            "preset": args.preset, "steps": result["steps"], "seed": args.seed, "train_seed": TRAIN_SEED,
            "seconds": round(result["seconds"], 1), "device": describe(device), "loss": result["loss"],
            "dataset": preset["dataset"], "size": preset["size"], "batch": preset["batch"]}
    from . import shapes_model

    shapes_model.save_shapes_model(stem + ".safetensors", result["model"], result["text_model"], result["config"],
                                   metadata={"training": json.dumps({k: v for k, v in info.items() if k != "loss"}),
                                             "size": str(preset["size"])})
    with open(stem + ".train.json", "w") as f:
        json.dump(info, f, indent=1)
    if args.sample_sheet:
        sample_sheet(stem + ".samples.png", result["model"], result["text_model"], preset["size"])
    print(f"wrote {stem}.safetensors, .train.json, .samples.png in {result['seconds']:.0f} s")


def describe(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class OutOfPlaceAdds:
    """Turns `a += b` into `a = a + b` inside the network while it trains.

    ComfyUI's Flux-family blocks add their residuals in place (`x += ...`, which PyTorch runs as `add_`), after a
    LayerNorm has saved `x` for its backward: autograd then refuses the step. Python rebinds `x` to what `+=`
    returns, so answering `add_` with a new tensor keeps the forward exactly the same. Only the two-argument form
    that `+=` produces is rewritten; the blocks make no other `add_` call whose result they drop.
    """

    def __init__(self):
        import torch
        from torch.overrides import TorchFunctionMode

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func is torch.Tensor.add_ and len(args) == 2 and not kwargs:
                    return args[0] + args[1]
                return func(*args, **(kwargs or {}))

        self.mode = _Mode()

    def __enter__(self):
        return self.mode.__enter__()

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def encode_captions(text_model, captions):
    """Caption -> T5 states [L, C] (float32, CPU), each distinct caption encoded once."""
    states = {}
    for caption in captions:
        if caption not in states:
            states[caption] = conditioning(text_model, caption)[0][0][0].float()
    return states


def conditioning(text_model, caption: str) -> list:
    """ComfyUI's CONDITIONING for `caption` (what CLIPTextEncode gives), tokenized from the caption-token table."""
    import torch

    from . import caption_tokens

    with torch.no_grad():
        cond, pooled = text_model.encode_token_weights(caption_tokens.caption_tokens(caption, _table()))[:2]
    return [[cond, {"pooled_output": pooled}]]


_TABLE = {}


def _table() -> dict:
    from . import caption_tokens

    if not _TABLE:
        _TABLE.update(caption_tokens.load_table())
    return _TABLE


def train(preset: dict, steps: int, seed: int, device, log_every: int, minutes: float | None = None) -> dict:
    import comfy.model_management
    import torch

    from . import shapes_model

    torch.manual_seed(seed)
    config = shapes_model.dit_config(**{k: preset[k] for k in ("patch_size", "hidden_size", "num_heads", "depth",
                                                                "depth_single_blocks")},
                                     axes_dim=axes_for(preset["hidden_size"] // preset["num_heads"]))
    text_model = shapes_model.build_text_model()
    model = shapes_model.build_diffusion_model(config, device=device)
    net = model.model.diffusion_model
    shapes_model.initialise(net, seed)
    net.to(device).train().requires_grad_(True)
    ema = {k: v.detach().clone() for k, v in net.state_dict().items()}

    t0 = time.time()
    images, captions = training_set(preset["dataset"], preset["size"])
    pictures = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    states = encode_captions(text_model, captions + [""])
    buckets: dict[int, list[int]] = {}
    for i, c in enumerate(captions):
        buckets.setdefault(states[c].shape[0], []).append(i)
    print(f"{len(captions)} pictures, {len(states)} captions, token lengths {sorted(buckets)}, "
          f"data {time.time() - t0:.0f} s", flush=True)

    gen = torch.Generator().manual_seed(seed)
    lengths = sorted(buckets)
    weights = torch.tensor([len(buckets[n]) for n in lengths], dtype=torch.float64)
    empty = states[""]
    opt = torch.optim.AdamW(net.parameters(), lr=preset["lr"], betas=(0.9, 0.99), weight_decay=0.01)
    comfy.model_management.in_training = True  # ComfyUI's RoPE then takes its autograd-capable path
    losses, running = [], 0.0
    start = time.time()
    try:
        step = 0
        while True:
            step += 1
            progress = step / steps
            if minutes:
                progress = max(progress, (time.time() - start) / (60 * minutes))
            if progress > 1:
                step -= 1
                break
            n_tokens = lengths[int(torch.multinomial(weights, 1, generator=gen))]
            pool = buckets[n_tokens]
            idx = [pool[int(j)] for j in torch.randint(len(pool), (preset["batch"],), generator=gen)]
            x0 = pictures[idx].float().div(127.5).sub(1.0).to(device)
            if torch.rand((), generator=gen) < CAPTION_DROPOUT:  # a whole batch of the empty prompt, at its
                ctx = empty.expand(len(idx), -1, -1).to(device)  # own length, as sampling gives it
            else:
                ctx = torch.stack([states[captions[i]] for i in idx]).to(device)
            t = torch.sigmoid(torch.randn(len(idx), generator=gen)).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            zt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * noise
            lr = preset["lr"] * min(1.0, step / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * progress))
            for group in opt.param_groups:
                group["lr"] = lr
            with OutOfPlaceAdds():
                v = net(zt, t, ctx, torch.zeros_like(t))
            loss = torch.nn.functional.mse_loss(v.float(), (noise - x0).float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                for k, v_ in net.state_dict().items():
                    if v_.is_floating_point():
                        ema[k].lerp_(v_, 1 - EMA_DECAY)
            running += loss.item()
            if step % log_every == 0:
                losses.append([step, round(running / log_every, 5)])
                print(f"step {step} ({progress:.0%}) loss {running / log_every:.4f} lr {lr:.2e} "
                      f"{(time.time() - start) / step:.2f} s/step", flush=True)
                running = 0.0
    finally:
        comfy.model_management.in_training = False
    net.load_state_dict(ema)
    net.eval().requires_grad_(False).to("cpu")
    return {"model": model, "text_model": text_model, "config": config, "loss": losses, "steps": step,
            "seconds": time.time() - start}


def training_set(count: int, size: int):
    """The synthetic world's first `count` pictures of seed TRAIN_SEED (uint8 [N, H, W, 3]) and their captions,
    made in chunks on every core."""
    import multiprocessing

    import numpy as np

    chunk = 1000
    jobs = [(start, min(chunk, count - start), size) for start in range(0, count, chunk)]
    with multiprocessing.get_context("spawn").Pool(max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        parts = pool.starmap(_training_chunk, jobs)
    return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]


def _training_chunk(first: int, count: int, size: int):
    from . import synthetic_world

    samples = synthetic_world.make_dataset(TRAIN_SEED, count, size=size, first=first)
    import numpy as np

    return np.stack([s.image for s in samples]), [s.caption for s in samples]


def axes_for(head_dim: int) -> list[int]:
    """Flux's RoPE split of a head: a quarter for the (unused) text axis, the rest over height and width."""
    first = head_dim // 4 // 2 * 2
    rest = (head_dim - first) // 2 // 2 * 2
    return [first, rest, head_dim - first - rest]


def sample_sheet(path: str, model, text_model, size: int, per_row: int = 8, rows: int = 4, steps: int = 24,
                 cfg: float = 4.0) -> None:
    """Pictures the model generates from held-out captions (ComfyUI's sampler), each captioned, as one PNG."""
    from PIL import Image, ImageDraw

    from . import synthetic_world

    held_out = synthetic_world.make_dataset(SAMPLE_SEED, per_row * rows, size=size)
    cell = 128
    sheet = Image.new("RGB", (per_row * cell, rows * (cell + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, sample in enumerate(held_out):
        picture = generate(model, text_model, sample.caption, size, seed=k, steps=steps, cfg=cfg)
        x, y = (k % per_row) * cell, (k // per_row) * (cell + 24)
        sheet.paste(Image.fromarray(picture).resize((cell, cell), Image.NEAREST), (x, y))
        draw.text((x + 2, y + cell + 2), sample.caption.replace("a ", "").replace(" and", ",")[:30], fill="black")
    sheet.save(path)


def generate(model, text_model, caption: str, size: int, seed: int = 0, steps: int = 24, cfg: float = 4.0):
    """One picture (uint8 [H, W, 3]) through ComfyUI's own sampling (comfy.sample, euler, simple schedule)."""
    import comfy.sample
    import numpy as np
    import torch

    positive = conditioning(text_model, caption)
    negative = conditioning(text_model, "")
    latent = torch.zeros(1, 3, size, size)
    noise = comfy.sample.prepare_noise(latent, seed)
    out = comfy.sample.sample(model, noise, steps, cfg, "euler", "simple", positive, negative, latent,
                              disable_pbar=True, seed=seed)
    picture = ((out[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(picture)


if __name__ == "__main__":
    main()
