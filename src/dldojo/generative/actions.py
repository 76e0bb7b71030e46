"""What a finished generative run can do from Python (declared in this family's `FAMILY.actions`):

    dldojo.load(run_dir).sample(n=64, seed=0)            # a grid of new images, written as a PNG
    dldojo.load(cgan_run).sample(n=10, label=3)         # a conditional model: images of one class

the `dldojo sample` command as a function of the loaded run. Every experiment module of this family defines

    sample_images(model, n: int, *, label: int | None, generator: torch.Generator) -> torch.Tensor

returning n images in [0, 1], shape (n, C, H, W) (a model that is not conditional raises a DojoError for a
label); `sample` finds it in the module of the run's experiment, so a new model plugs in by defining it.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dldojo.engine.display import image_html
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun

MAX_SAMPLES = 1024


@dataclasses.dataclass
class SampleGrid:
    """Images drawn from a generative run: `images` (n, C, H, W) in [0, 1] and the PNG grid at `path`."""

    images: Any
    path: Path
    experiment: str
    seed: int
    label: int | None = None

    def __repr__(self) -> str:
        what = f" of class {self.label}" if self.label is not None else ""
        return f"{len(self.images)} samples{what} from {self.experiment} (seed {self.seed}): {self.path}"

    def _repr_html_(self) -> str:
        return f"<p>{repr(self)}</p>" + image_html(self.path, alt="samples")


def sampler_of(run: LoadedRun) -> Callable[..., Any]:
    """The `sample_images` function of the module that defines the run's experiment."""
    module = importlib.import_module(run.experiment.run.__module__)
    function = getattr(module, "sample_images", None)
    if function is None:
        raise DojoError(f"{run.experiment.name} ({module.__name__}) defines no sample_images(model, n, *, label, "
                        f"generator); it cannot be sampled from.")
    return function


def _check_int(value: Any, what: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise DojoError(f"{what} must be an integer {bounds}, got {value!r}.")


def sample(run: LoadedRun, n: int = 64, *, label: int | None = None, seed: int = 0,
           out: str | Path | None = None) -> SampleGrid:
    """Draw `n` images from the run's model (random stream `seed`; a conditional model's images of class
    `label`) and write them as one PNG grid to `out` (default RUN_DIR/samples/samples-n{n}-seed{seed}.png)."""
    import torch
    from torchvision.utils import save_image

    _check_int(n, "n", 1, MAX_SAMPLES)
    _check_int(seed, "seed", 0)
    if label is not None:
        _check_int(label, "label", 0)
    if out is not None and Path(out).suffix.lower() != ".png":
        raise DojoError(f"--out must name a .png file, got {out}.")
    function = sampler_of(run)
    model = run.model
    images = function(model, n, label=label, generator=torch.Generator().manual_seed(seed))
    if not (torch.is_tensor(images) and images.dim() == 4 and len(images) == n and images.is_floating_point()):
        raise DojoError(f"{run.experiment.name}'s sample_images returned {getattr(images, 'shape', type(images))}, "
                        f"not {n} images of shape (C, H, W); the experiment module is broken.")
    images = images.detach().clamp(0, 1)
    if out is None:
        tag = f"-label{label}" if label is not None else ""
        out = run.path(f"samples/samples-n{n}-seed{seed}{tag}.png")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, path, nrow=math.ceil(math.sqrt(n)), padding=2, pad_value=1.0)
    return SampleGrid(images, path, run.experiment.name, seed, label)
