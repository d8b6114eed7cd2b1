"""Where one training step of a preset spends its time (not a test).

    python benchmarks/profile_step.py --preset cpu --steps 30
    python benchmarks/profile_step.py --landmarks 17 --input 256x96 --levels 6 --sc-downsample 4 \
        --cache-factor 2.75 --ops    # a spine's stage 1, as the input rule fits it

Times, per step and averaged after a warm-up: batch sampling + augmentation
(grid_sample, elastic field, landmark transport), target generation, forward,
backward + optimizer. Uses random images of the real cache size and 37 landmarks,
so it needs no data set.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from scn_annotator.engine.augment import augment_batch, random_generator
from scn_annotator.engine.config import preset
from scn_annotator.engine.device import mixed_precision, training_layout
from scn_annotator.engine.heatmaps import GaussianTargets, heatmap_loss
from scn_annotator.engine.network import SpatialConfigurationNet
from scn_annotator.engine.trainer import _make_optimizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--landmarks", type=int, default=37)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--input", help="HxW (default: the preset's)")
    ap.add_argument("--levels", type=int)
    ap.add_argument("--first-filters", type=int)
    ap.add_argument("--sc-downsample", type=int)
    ap.add_argument("--cache-factor", type=float)
    ap.add_argument("--ops", action="store_true", help="also the operators that take most of a step")
    ap.add_argument("--layout", choices=["auto", "contiguous", "channels_last"], default="auto")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    fields = ("levels", "sc_downsample", "cache_factor", "first_filters")
    changes = {k: getattr(args, k) for k in fields if getattr(args, k)}
    if args.input:
        changes["input_size"] = tuple(int(v) for v in args.input.lower().split("x"))
    cfg = preset(args.preset, **changes)
    n, b = args.landmarks, cfg.batch_size
    h, w = cfg.input_size
    ch, cw = round(h * cfg.cache_factor), round(w * cfg.cache_factor)
    gen = random_generator(0)
    caches = torch.rand(16, 1, ch, cw) * 2 - 1
    points = torch.rand(16, n, 2) * torch.tensor([cw - 1.0, ch - 1.0])
    valid = torch.ones(16, n, dtype=torch.bool)
    cpu = torch.device("cpu")
    layout, amp = training_layout(cpu), mixed_precision(cpu) if cfg.amp else None
    if args.layout != "auto":
        layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    model = SpatialConfigurationNet(cfg.network_for(n)).to(memory_format=layout)
    targets = GaussianTargets(n)
    opt = _make_optimizer(cfg, model, targets)
    parts = {"augment": 0.0, "targets": 0.0, "forward": 0.0, "backward+step": 0.0}
    ops = torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU],
        schedule=torch.profiler.schedule(wait=0, warmup=3, active=args.steps, repeat=1),
        acc_events=True,
    )
    with ops if args.ops else contextlib.nullcontext():
        for step in range(args.steps + 3):
            t0 = time.perf_counter()
            idx = torch.randperm(16, generator=gen)[:b]
            images, pts, ok = augment_batch(caches[idx], points[idx], valid[idx], cfg.input_size, cfg.augment, gen)
            t1 = time.perf_counter()
            target = targets(pts, ok, cfg.input_size)
            t2 = time.perf_counter()
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                out = model(images.contiguous(memory_format=layout))
            heat, sig = heatmap_loss(out.heatmaps, target, ok, targets.sigmas(), cfg.sigma_alpha)
            t3 = time.perf_counter()
            opt.zero_grad()
            (heat + sig).backward()
            opt.step()
            t4 = time.perf_counter()
            if step >= 3:
                for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    parts[key] += dt / args.steps
            if args.ops:
                ops.step()
    if args.ops:
        print(ops.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))
    total = sum(parts.values())
    precision = "fp32" if amp is None else str(amp).removeprefix("torch.")
    threads = torch.get_num_threads()
    print(f"preset {args.preset}: input {h}x{w}, batch {b}, {n} landmarks, {precision}, {threads} threads")
    for key, value in parts.items():
        print(f"  {key:<14} {1000 * value:8.1f} ms  {100 * value / total:5.1f} %")
    print(f"  {'total':<14} {1000 * total:8.1f} ms  ({b / total:.2f} images/s)")


if __name__ == "__main__":
    main()
