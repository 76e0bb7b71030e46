"""What a finished image-classifier run can do from Python (declared in this family's `FAMILY.actions`):
`r.explain(index=3)` or `r.explain("cat.png")`: the `dldojo explain` command (Grad-CAM / LIME / KernelSHAP
overlays) on an image file, an array, a PIL image, or an image of the run's own test set."""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any

import numpy as np

from dldojo.engine.display import image_html
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun


@dataclasses.dataclass
class Explanation:
    """`dldojo explain`'s result (`vision.explain.ExplainResult`: paths, top predictions, target, layer,
    superpixels) and, for a test-set image, its true class; renders as the overlay figure in Jupyter."""

    result: Any
    image: Path
    true_class: str | None = None

    def __getattr__(self, name: str) -> Any:  # paths, top, target, target_name, layer, n_segments
        if name.startswith("_") or "result" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["result"], name)

    def _summary(self) -> str:
        top = ", ".join(f"{name} {p:.3f}" for name, p in self.result.top)
        truth = f"; true class: {self.true_class}" if self.true_class is not None else ""
        return f"{self.image.name}: predicted {top}; explained class: {self.result.target_name}{truth}"

    def __repr__(self) -> str:
        return f"<Explanation {self._summary()}; {len(self.result.paths)} PNGs in {self.result.paths[0].parent}>"

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self._summary())}</p>" + image_html(self.result.paths[-1], style="max-width:100%")


def _test_image(run: LoadedRun, index: int) -> tuple[np.ndarray, str]:
    from dldojo.data import images
    from dldojo.vision.common import classifier_meta

    meta = classifier_meta(run)
    _, test = images.load(meta["dataset"])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(test):
        raise DojoError(f"index must be an integer in 0..{len(test) - 1} (the {meta['dataset']} test set), "
                        f"got {index!r}.")
    return np.asarray(test.images[index]), test.classes[int(test.labels[index])]


def _write_png(pixels: Any, path: Path) -> Path:
    from PIL import Image

    if isinstance(pixels, Image.Image):
        image = pixels
    else:
        array = np.asarray(pixels)
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3)):
            raise DojoError(f"an image array must be uint8 of shape (H, W), (H, W, 1) or (H, W, 3), got "
                            f"{array.dtype} {array.shape}.")
        image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def explain(run: LoadedRun, image: Any = None, *, index: int = 0, method: str = "all", target: str | int | None = None,
            out: str | Path | None = None, samples: int = 300, segments: int | None = None, layer: str | None = None,
            baseline: str = "mean", seed: int = 0) -> Explanation:
    """Why the classifier predicts what it does for `image` (a PNG / JPEG path, a uint8 array or a PIL
    image; default: test image number `index` of the run's dataset): `method` gradcam | lime | shap | all
    (or a comma-separated list) for class `target` (default: the predicted one). Writes the overlay PNGs to
    `out` (default RUN_DIR/explain) as `dldojo explain` does; `samples`, `segments`, `layer`, `baseline` and
    `seed` are its options."""
    from dldojo.vision.explain import explain as explain_image

    out_dir = Path(out) if out is not None else run.run_dir / "explain"
    true_class = None
    if image is None:
        pixels, true_class = _test_image(run, index)
        path = _write_png(pixels, out_dir / f"test{index}.png")
    elif isinstance(image, str | Path):
        path = Path(image)
    else:
        path = _write_png(image, out_dir / "image.png")
    result = explain_image(run.run_dir, path, method=method, target=target, out_dir=out_dir, n_samples=samples,
                           n_segments=segments, layer=layer, baseline=baseline, seed=seed)
    return Explanation(result, path, true_class)
