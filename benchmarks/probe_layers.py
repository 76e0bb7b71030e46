"""Linear probes on the frozen features of each conv group of an airbench source, on flowers-5.

Yosinski et al. (2014): early layers are general, late layers specific. This measures it for
transfer-flowers' source: features of each of airbench's three conv groups (global max- and average-pooled,
standardised), for the flowers training images and their mirror images at 48 px, then a multinomial
logistic regression (full-batch L-BFGS, L2 penalty wd·‖W‖²) per layer set, tested with mirror TTA.
No augmentation beyond the mirror, so it is a probe, not the transfer-flowers `frozen` variant.

    DLDOJO_DATA=../shared/data python benchmarks/probe_layers.py runs/bench/pretrain-cifar10/<run> [more sources]

Note: the three wd values are compared on the test split (a pilot, not a tuned result).
"""

import argparse
import time

import torch
import torch.nn.functional as F

from dldojo.data import images as image_data
from dldojo.vision import archs, common, transfer


def group_features(model: archs.AirbenchNet, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """[max-pool, average-pool] of each conv group's output, per group (transfer's multi-layer head input)."""
    names = transfer.stage_names(model)
    widths = [2 * group.conv2.out_channels for group in model.groups]
    with torch.no_grad():
        pooled = torch.cat([transfer.pooled_stages(model, names, x[start:start + 500])
                            for start in range(0, len(x), 500)])
    return dict(enumerate(pooled.split(widths, dim=1)))


def probe(train_f, y_train, test_views, y_test, wd: float) -> float:
    mu, sd = train_f.mean(0), train_f.std(0) + 1e-6
    a = (train_f - mu) / sd
    weight = torch.zeros(a.shape[1], int(y_train.max()) + 1, requires_grad=True)
    bias = torch.zeros(weight.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ weight + bias, y_train) + wd * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        probs = sum((((v - mu) / sd) @ weight + bias).softmax(1) for v in test_views)
    return (probs.argmax(1) == y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source_runs", nargs="+", help="run directories of finished airbench sources "
                        "(pretrain-cifar10, or simclr_flowers.py's output); with several, also all their groups together")
    parser.add_argument("--image-size", type=int, default=48)
    args = parser.parse_args()
    train, test = image_data.load("flowers")
    y_train = torch.as_tensor(train.labels).repeat(2)
    y_test = torch.as_tensor(test.labels)
    every_group = []  # (train, test, test mirrored) features of every group of every source
    for source_run in args.source_runs:
        torch.manual_seed(0)
        model, meta = common.load_classifier(source_run)
        if not isinstance(model, archs.AirbenchNet):
            raise SystemExit(f"{source_run}: an airbench source is needed, got {meta['arch']}")
        mean, std = torch.tensor(meta["mean"]).view(1, 3, 1, 1), torch.tensor(meta["std"]).view(1, 3, 1, 1)

        def prepare(split):
            x = image_data.as_uint8_tensor(split.images).permute(0, 3, 1, 2).float() / 255
            return (transfer.resize(x, args.image_size) - mean) / std

        started = time.time()
        x_train, x_test = prepare(train), prepare(test)
        f_train = group_features(model, torch.cat([x_train, x_train.flip(-1)]))
        f_test, f_test_mirror = group_features(model, x_test), group_features(model, x_test.flip(-1))
        print(f"{source_run}: features in {time.time() - started:.0f} s; widths {({k: v.shape[1] for k, v in f_train.items()})}")
        every_group += [(f_train[g], f_test[g], f_test_mirror[g]) for g in f_train]
        for groups in ([2], [1], [0], [1, 2], [0, 1, 2]):
            train_f = torch.cat([f_train[g] for g in groups], 1)
            test_views = [torch.cat([f[g] for g in groups], 1) for f in (f_test, f_test_mirror)]
            accuracies = {wd: round(probe(train_f, y_train, test_views, y_test, wd), 3) for wd in (1e-4, 1e-3, 1e-2)}
            print(f"conv groups {groups}: test accuracy by wd {accuracies}")
    if len(args.source_runs) > 1:
        train_f, *test_views = (torch.cat(parts, 1) for parts in zip(*every_group))
        accuracies = {wd: round(probe(train_f, y_train, test_views, y_test, wd), 3) for wd in (1e-4, 1e-3, 1e-2)}
        print(f"every group of all {len(args.source_runs)} sources ({train_f.shape[1]} features): "
              f"test accuracy by wd {accuracies}")


if __name__ == "__main__":
    main()
