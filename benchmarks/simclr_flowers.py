"""Pilot: SimCLR continued pre-training of a transfer-flowers source on the flowers training images.

The issue names self-supervised pre-training on the images as a way to get a source model without
ImageNet. This continues the CIFAR-10 source (or, with --scratch, a fresh airbench) with SimCLR
(Chen et al. 2020) on the 3,453 flowers training images (no labels; test images unused), then saves a run
directory that `transfer-flowers --set source_run=OUT` takes. NT-Xent loss over 2N views (τ temperature):

    loss_i = −log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ),   j = the other view of i's image,

z = a 2-layer MLP projection of the body's pooled features, sim = cosine. SGD (Nesterov) with a cosine
schedule fitted to a wall-time budget (measured from the first five steps). The views come from
`augment.contrastive_views`, one batched call per step (per-image torchvision calls cost ~0.5 s of a
~3 s step).

    DLDOJO_DATA=../shared/data python benchmarks/simclr_flowers.py runs/bench/pretrain-cifar10/<run> \\
        runs/pilot/simclr-flowers --minutes 12
    dldojo run transfer-flowers --preset full --set source_run=runs/pilot/simclr-flowers
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from dldojo.data import images as image_data
from dldojo.vision import archs, augment, common, transfer


def nt_xent(z: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss for 2N projections, rows i and i + N being two views of the same image."""
    z = F.normalize(z.float(), dim=1)
    similarity = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    n = len(z) // 2
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(similarity, positives)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source_run", help="run directory of a finished pretrain-cifar10 (airbench) run")
    parser.add_argument("out", help="where to write the new source run directory")
    parser.add_argument("--minutes", type=float, default=12.0, help="wall-time budget of the pre-training")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (2 views each)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--tau", type=float, default=0.2, help="NT-Xent temperature")
    parser.add_argument("--scratch", action="store_true", help="start from random weights, not the source")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, meta = common.load_classifier(args.source_run)
    train, _ = image_data.load("flowers")
    mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(1, 3, 1, 1)
    images = image_data.as_uint8_tensor(train.images).permute(0, 3, 1, 2).contiguous()
    if args.scratch:
        model = archs.build_arch(meta["arch"], num_classes=meta["num_classes"], **meta["arch_kwargs"])
        if isinstance(model, archs.AirbenchNet):  # its data-dependent first layer, from the flowers
            model.init_whitening(((transfer.resize(images[:2000], args.image_size).float() / 255 - mean) / std))
    body = transfer.TransferNet(model, num_classes=10, head_norm=False).body  # a copy; its head is the identity
    parent, attr = transfer.last_linear(model)
    width = getattr(parent, attr).in_features
    projector = nn.Sequential(nn.Linear(width, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    net = nn.Sequential(body, projector).to(memory_format=torch.channels_last).train()

    def views(batch: torch.Tensor) -> torch.Tensor:
        x = (augment.contrastive_views(batch, args.image_size) - mean) / std
        return x.contiguous(memory_format=torch.channels_last)

    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=args.lr, momentum=0.9,
                                nesterov=True, weight_decay=5e-4)
    steps_per_epoch = len(images) // args.batch_size
    started, step, total = time.time(), 0, math.inf
    while step < total:
        order = torch.randperm(len(images))
        for b in range(steps_per_epoch):
            batch = images[order[b * args.batch_size:(b + 1) * args.batch_size]]
            if total < math.inf:
                for group in optimizer.param_groups:
                    group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nt_xent(net(views(torch.cat([batch, batch]))), args.tau)  # rows i, i + N: one image
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == 5:  # fit the schedule to the time budget
                total = int(args.minutes * 60 / ((time.time() - started) / 5))
                print(f"{total} steps = {total / steps_per_epoch:.1f} epochs in {args.minutes:g} min", flush=True)
            if step % 20 == 0:
                print(f"step {step}/{total}: NT-Xent {loss.item():.3f}, {time.time() - started:.0f} s", flush=True)
            if step >= total:
                break
    # a run directory transfer-flowers can load (engine.reload.load_run): the trained body, with the source's
    # (unused) head, under the source's config — with a config hash of its own, so that no run that needs a
    # pretrain-cifar10 sub-run ever mistakes it for one
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = {**model.state_dict(), **body.state_dict()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    (out / "classifier.json").write_text(json.dumps(meta, indent=1))
    config = json.loads((Path(args.source_run) / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "config_hash": f"simclr-{time.time_ns()}"}, indent=1))
    (out / "summary.json").write_text(json.dumps({
        "metrics": {}, "timings": {"wall_seconds": time.time() - started},
        "facts": {"simclr_from": str(args.source_run), "minutes": args.minutes, "tau": args.tau}}, indent=1))
    print(f"wrote {out} after {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
