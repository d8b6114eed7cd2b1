"""One training step of our SCN against landmarker's, side by side in one process (not a test).

    .venv/bin/pip install --no-deps landmarker==0.4.1
    .venv/bin/python benchmarks/step_peer.py --rounds 4 --steps 10

Both nets get the same settings: input 256 x 192, 32 filters, 4 levels (landmarker's
``la_depth=3``: three poolings, like our four levels), 37 landmarks, batch 4, channel
dropout 0.5, Adam, mean squared error against random targets. ``peer`` and ``ours`` run
in fp32 with contiguous tensors; ``ours-fast`` is our net as ``train`` runs it on this
machine (``device.training_layout`` and ``device.mixed_precision``: channels-last and,
on a CPU with native bf16, bf16 autocast). The two are timed
in alternating rounds so that whatever else the machine does hits both alike; the
figure is the median step of each round.

landmarker's package ``__init__`` imports MONAI, which ``--no-deps`` does not install;
its SCN module needs only ``monai.networks.nets.UNet`` for another class, so a stand-in
module is put in ``sys.modules`` before the file is loaded by path.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from scn_annotator.engine.config import SCNConfig
from scn_annotator.engine.device import mixed_precision, training_layout
from scn_annotator.engine.network import SpatialConfigurationNet


def load_peer() -> type[torch.nn.Module]:
    spec = importlib.util.find_spec("landmarker")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("landmarker is not installed: .venv/bin/pip install --no-deps landmarker==0.4.1")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "spatial_configuration_net.py"
    for name in ("monai", "monai.networks", "monai.networks.nets"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["monai.networks.nets"].UNet = object  # type: ignore[attr-defined]
    module_spec = importlib.util.spec_from_file_location("landmarker_scn", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.OriginalSpatialConfigurationNet


def stepper(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None = None
) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=amp) if amp is not None else nullcontext()

    def step() -> None:
        with autocast:
            out = model(x)
            out = out.heatmaps if hasattr(out, "heatmaps") else out
        loss = torch.nn.functional.mse_loss(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", default="256x192")
    ap.add_argument("--filters", type=int, default=32)
    ap.add_argument("--landmarks", type=int, default=37)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--variants", default="peer,ours,ours-fast", help="peer, peer-fast, ours, ours-fast")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    n, f, b = args.landmarks, args.filters, args.batch
    torch.manual_seed(0)
    x = torch.randn(b, 1, h, w)
    y = torch.rand(b, n, h, w) * 0.1
    peer_cls = load_peer()
    steps: dict[str, Callable[[], None]] = {}
    for name in args.variants.split(","):
        cpu = torch.device("cpu")
        layout = training_layout(cpu)
        if name.startswith("peer"):
            peer = peer_cls(in_channels=1, out_channels=n, la_channels=f, la_depth=3, sp_channels=f, la_dropout=0.5)
            if name == "peer":
                steps[name] = stepper(peer.train(), x, y)
            else:  # the peer given the same layout and precision, for a fair reading of where the gain lies
                peer = peer.to(memory_format=layout).train()
                steps[name] = stepper(peer, x.contiguous(memory_format=layout), y, mixed_precision(cpu))
        else:
            cfg = SCNConfig(n, filters=f, sc_filters=f, levels=4, dropout_mode="channel")
            ours = SpatialConfigurationNet(cfg).train()
            if name == "ours":
                steps[name] = stepper(ours, x, y)
            else:  # what training does on this machine: its memory layout and mixed precision
                ours = ours.to(memory_format=layout)
                steps[name] = stepper(ours, x.contiguous(memory_format=layout), y, mixed_precision(cpu))
    times: dict[str, list[float]] = {k: [] for k in steps}
    for step in steps.values():  # warm-up
        for _ in range(2):
            step()
    for _ in range(args.rounds):
        for name, step in steps.items():
            per = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                step()
                per.append(time.perf_counter() - t0)
            times[name].append(statistics.median(per))
    fast = mixed_precision(torch.device("cpu"))
    print(f"input {h}x{w}, {f} filters, 4 levels, {n} landmarks, batch {b}, {torch.get_num_threads()} threads")
    layout = training_layout(torch.device("cpu"))
    print(f"  peer and ours: fp32, contiguous; ours-fast and peer-fast: {layout}, autocast {fast}")
    ref = statistics.median(times["peer"]) if "peer" in times else None
    for name, values in times.items():
        med = statistics.median(values)
        rounds = ", ".join(f"{1000 * v:.0f}" for v in values)
        rel = f"  peer/this {ref / med:.2f}x" if ref else ""
        print(f"  {name:<10} {1000 * med:7.0f} ms/step (rounds: {rounds}){rel}")


if __name__ == "__main__":
    main()
