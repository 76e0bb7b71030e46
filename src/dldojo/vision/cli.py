"""Vision commands: `dldojo archs` (every CNN architecture with its parameters and multiply-accumulates) and
`dldojo explain RUN_DIR --image PATH` (Grad-CAM / LIME / KernelSHAP overlays of a trained classifier)."""

from __future__ import annotations

import argparse
import textwrap


def experiments_by_arch() -> dict[str, list[str]]:
    """Architecture -> the registered experiments that train it (their quick preset's `arch`)."""
    import dataclasses

    from dldojo.engine import registry

    found: dict[str, list[str]] = {}
    for exp in registry.load_all().values():
        fields = {f.name: f for f in dataclasses.fields(exp.config_cls)}
        if "arch" in fields:
            arch = exp.presets.get("quick", {}).get("arch", fields["arch"].default)
            found.setdefault(arch, []).append(exp.name)
    return found


def cmd_archs(args) -> int:
    from dldojo.engine.console import format_table, terminal_width
    from dldojo.vision import archs

    trained_by = experiments_by_arch()
    rows = []
    for name in sorted(archs.ARCHITECTURES):
        model = archs.build_arch(name, num_classes=args.classes)
        macs_32 = archs.count_macs(model, (3, 32, 32))
        stem_128 = {} if name.startswith(("airbench", "plain")) else {"stem": "imagenet"}
        macs_128 = archs.count_macs(archs.build_arch(name, num_classes=args.classes, **stem_128), (3, 128, 128))
        rows.append([name, f"{archs.count_params(model) / 1e6:.3f}M", f"{macs_32 / 1e6:.1f}M",
                     f"{macs_128 / 1e6:.1f}M" + (" (ImageNet stem)" if stem_128 else ""),
                     ", ".join(trained_by.get(name, [])) or "none: --set arch=" + name])
    width = None if args.wide else terminal_width()
    print(format_table(rows, ["architecture", f"parameters ({args.classes} classes)", "MACs 3x32x32",
                              "MACs 3x128x128", "experiments"], max_width=width, shrink=(4, 3)))
    notes = ("MACs: multiply-accumulates of conv and linear layers for one image (FLOPs = 2 x MACs). Build one "
             "with dldojo.vision.archs.build_arch(name).",
             "An architecture without an experiment of its own trains on CIFAR-10 through any cifar10-<arch> "
             "experiment, with that experiment's presets and references and filed under its name, e.g.:")
    print("\n" + "\n".join(textwrap.fill(note, width=min(width or 110, 110)) for note in notes))
    print("  dldojo run cifar10-resnet20 --set arch=resnet56")
    return 0


def cmd_explain(args) -> int:
    from dldojo.vision.explain import explain

    result = explain(args.run_dir, args.image, method=args.method, target=args.target, out_dir=args.out,
                     n_samples=args.samples, n_segments=args.segments, layer=args.layer, baseline=args.baseline,
                     seed=args.seed, model=args.model)
    print(f"top-{len(result.top)} predicted classes:")
    for rank, (name, probability) in enumerate(result.top, 1):
        print(f"  {rank}. {name}  {probability:.3f}")
    details = [f"target class: {result.target_name} (index {result.target})"]
    if result.layer is not None:
        details.append(f"Grad-CAM layer {result.layer}")
    if result.n_segments is not None:
        details.append(f"{result.n_segments} superpixels, {args.samples} samples")
    print("; ".join(details))
    for path in result.paths:
        print(f"wrote {path}")
    return 0


EXPLAIN_METHODS_HELP = """methods (--method):
  gradcam  Grad-CAM (Selvaraju et al. 2017): ReLU(sum_k alpha_k A_k) of the last conv block, alpha_k = mean dlogit/dA_k
  lime     LIME (Ribeiro et al. 2016): kernel-weighted ridge fit of the class probability on which superpixels are kept
  shap     KernelSHAP (Lundberg & Lee 2017): Shapley values of the superpixels, adding up to p(image) - p(baseline)
  all      all three: one PNG each plus a side-by-side PNG (default)"""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archs", help="CNN architectures with parameter and MAC counts (32 px and 128 px inputs)",
                       description="Every architecture of dldojo.vision.archs with its parameter count and "
                                   "multiply-accumulates per image at 32x32 (CIFAR stem) and 128x128 (ImageNet stem "
                                   "for the ResNet/MobileNet/DenseNet/EfficientNet families), and the registered "
                                   "experiments that train it.")
    p.add_argument("--classes", type=int, default=10, help="classifier outputs (default 10)")
    p.add_argument("--wide", action="store_true", help="do not shorten cells to fit the terminal")
    p.set_defaults(func=cmd_archs)

    p = sub.add_parser("explain", help="why a trained image classifier predicts what it does: Grad-CAM, LIME, SHAP",
                       description="Explain a finished vision run's prediction on one image file, or a pre-trained "
                                   "ImageNet model's (--model),\nand write overlay PNGs: the input with the predicted "
                                   "class and probability, and the attribution map\nfor the target class, one per "
                                   "method and all side by side. The image (PNG/JPEG) is centre-cropped,\nresized to "
                                   "the model's input size (ImageNet models: shorter side 256, centre 224), converted "
                                   "to its\nchannels and normalised as in training.",
                       epilog=EXPLAIN_METHODS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="run directory of a finished image classifier run (mnist-cnn, "
                                              "cifar10-<arch>, pretrain-cifar10, transfer-flowers; `dldojo runs` "
                                              "lists them); or none, with --model")
    p.add_argument("--model", metavar="NAME",
                   help="instead of a run: a pre-trained ImageNet classifier, efficientnet_lite0 (offline) or "
                        "torchvision:NAME (torch's hub cache), explained on its 1000 ImageNet classes "
                        "(e.g. --target daisy); PNGs go to explain/NAME by default")
    p.add_argument("--image", required=True, metavar="PATH", help="image file to explain (PNG or JPEG)")
    p.add_argument("--method", default="all", metavar="METHOD",
                   help="gradcam | lime | shap | all, or a comma-separated list (default all)")
    p.add_argument("--target", metavar="CLASS", help="class to explain, by name or index (default: the predicted one)")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default RUN_DIR/explain, or explain/NAME)")
    p.add_argument("--samples", type=int, default=300, metavar="N",
                   help="LIME / SHAP: perturbed images evaluated (default 300)")
    p.add_argument("--segments", type=int, metavar="M",
                   help="LIME / SHAP: SLIC superpixels asked for (default 25 up to 48 px, 60 above)")
    p.add_argument("--baseline", default="mean", choices=["mean", "zeros"],
                   help="LIME / SHAP: switched-off superpixels show the image's mean colour (mean, default) or "
                        "0 in normalised units, the training set's mean colour (zeros)")
    p.add_argument("--layer", metavar="NAME",
                   help="Grad-CAM: dotted module name of the layer (default: the last spatial block, e.g. groups.2)")
    p.add_argument("--seed", type=int, default=0, help="LIME / SHAP sampling seed (default 0)")
    p.set_defaults(func=cmd_explain)
