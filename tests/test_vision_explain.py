"""`dldojo explain`: Grad-CAM from the definition against captum's LayerGradCam (and CAM), LIME and
KernelSHAP over superpixels on a model whose answer is known, image loading, and the command end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from PIL import Image
from torch import nn

from dldojo.cli import main
from dldojo.engine.errors import DojoError
from dldojo.vision import archs, explain


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # small forward passes; spinning OpenMP threads only slow them down here
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def captum_grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target) -> torch.Tensor:
    """The reference: captum's LayerGradCam with ReLU, upsampled with LayerAttribution.interpolate."""
    maps = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(maps, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]


# ---------------------------------------------------------------------------- Grad-CAM


EXPECTED_LAYERS = {
    "airbench93": "groups.2", "airbench94": "groups.2", "plain_cnn": "features.4", "resnet20": "stages.2",
    "resnet56": "stages.2", "resnet18": "stages.3", "preact_resnet164": "final_norm", "wrn16_4": "final_norm",
    "mobilenet_v1": "features.13", "mobilenet_v2": "features.18", "efficientnet_b0": "features.17",
    "efficientnet_lite0": "features.17",
    "densenet_bc_100_12": "features",
}


def test_every_architecture_has_an_expected_default_layer():
    assert set(EXPECTED_LAYERS) == set(archs.ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(archs.ARCHITECTURES))
def test_grad_cam_equals_captum_layer_gradcam(name):
    in_channels, size = (1, 28) if name == "plain_cnn" else (3, 32)
    model = archs.build_arch(name, num_classes=7, in_channels=in_channels).double().eval()
    x = torch.randn(2, in_channels, size, size, dtype=torch.float64)
    layer_name = explain.default_target_layer(model)
    assert layer_name == EXPECTED_LAYERS[name]
    target = torch.tensor([1, 4])

    ours = explain.grad_cam(model, x, target)
    reference = captum_grad_cam(model, model.get_submodule(layer_name), x, target)

    assert ours.shape == (2, size, size)
    scale = reference.abs().max()
    assert scale > 0  # a map that is all zeros would make the comparison empty
    # Random-init networks give maps from 1e-19 (MobileNet v1) to 1e4 (ResNet-164): compare relative to the peak.
    torch.testing.assert_close(ours / scale, reference / scale, atol=1e-6, rtol=0)


def test_grad_cam_of_a_gap_linear_head_is_cam():
    """Selvaraju et al. §3.1: with global average pooling then a linear layer (ResNet), α_k^c = w_k^c / Z,
    so Grad-CAM = ReLU(Σ_k w_k^c A^k) / Z, the class activation map of Zhou et al. (2016)."""
    model = archs.build_arch("resnet20", num_classes=5).double().eval()
    with torch.no_grad():
        model.fc.weight.normal_()  # init is N(0, 0.01): make the classes clearly different
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    kept = []
    handle = model.stages[-1].register_forward_hook(lambda m, i, o: kept.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    A = kept[0]  # (1, 64, 8, 8)
    for c in range(5):
        cam = torch.relu(torch.einsum("k,nkij->nij", model.fc.weight[c], A)) / (A.shape[2] * A.shape[3])
        cam = torch.nn.functional.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(explain.grad_cam(model, x, c), cam, atol=1e-12, rtol=1e-9)


def test_grad_cam_properties():
    model = archs.build_arch("airbench93", num_classes=10).eval()
    x = torch.randn(3, 3, 32, 32)
    maps = [explain.grad_cam(model, x, c) for c in range(10)]
    for cam in maps:
        assert cam.shape == (3, 32, 32) and (cam >= 0).all() and torch.isfinite(cam).all()
    stacked = torch.stack(maps)  # (class, image, H, W)
    assert (stacked.flatten(2).amax(-1) > 0).float().mean() > 0.5  # mostly non-trivial maps
    assert (maps[0] - maps[1]).abs().max() > 1e-3 * stacked.max()  # the target matters

    # Images are independent in eval mode: one per call or all at once, per-image targets.
    together = explain.grad_cam(model, x, torch.tensor([0, 5, 9]))
    for i, c in enumerate((0, 5, 9)):
        torch.testing.assert_close(together[i], explain.grad_cam(model, x[i:i + 1], c)[0], atol=1e-6, rtol=1e-5)

    # Works for a frozen model and inside torch.no_grad() (the maps are a leaf of their own).
    model.requires_grad_(False)
    with torch.no_grad():
        torch.testing.assert_close(explain.grad_cam(model, x, 3), maps[3])


def test_grad_cam_layer_override_and_unknown_layer():
    model = archs.build_arch("airbench93").double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    middle = explain.grad_cam(model, x, 2, layer="groups.1")
    torch.testing.assert_close(middle, captum_grad_cam(model, model.groups[1], x, 2), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(explain.grad_cam(model, x, 2, layer=model.groups[1]), middle)
    assert (middle - explain.grad_cam(model, x, 2)).abs().max() > 0
    with pytest.raises(DojoError, match=r"no layer 'group.1'.*Did you mean 'groups.1'"):
        explain.grad_cam(model, x, 2, layer="group.1")
    with pytest.raises(DojoError, match="not \\(N, K, u, v\\)"):
        explain.grad_cam(model, x, 2, layer="head")


# ---------------------------------------------------------------------------- superpixels, LIME, KernelSHAP


class RegionModel(nn.Module):
    """Two logits: 0 and the mean input inside one rectangle. Only that region can matter."""

    def __init__(self, rows: slice, cols: slice):
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        region_mean = x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(region_mean), region_mean], dim=1)


def region_image(size: int, channels: int, rows: slice, cols: slice) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 90, (size, size, channels)).astype(np.uint8)
    image[rows, cols] = 220 if channels == 1 else (230, 200, 40)
    return image


def shapes_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: a colour gradient, five coloured rectangles, a little noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([60 + 100 * rows / height, 80 + 60 * cols / width, np.full((height, width), 120.0)], -1)
    for _ in range(5):
        top, left = rng.integers(0, height * 3 // 4), rng.integers(0, width * 3 // 4)
        image[top:top + height // 4, left:left + width // 4] = rng.integers(0, 256, 3)
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def test_superpixels_labels_and_fallback():
    rows, cols = slice(4, 12), slice(16, 26)
    for channels, size in ((3, 32), (1, 28)):
        segments = explain.superpixels(region_image(size, channels, rows, cols))
        assert segments.shape == (size, size) and segments.dtype == np.int64
        assert set(np.unique(segments)) == set(range(segments.max() + 1))  # 0..M−1, no gaps
        assert 10 <= segments.max() + 1 <= 40  # about the 25 asked for
    assert 30 <= explain.superpixels(shapes_image(128, 128)).max() + 1 <= 90  # about 60 at 128 px
    flat = np.full((32, 32, 3), 128, dtype=np.uint8)  # nothing for SLIC to split: a regular grid
    grid = explain.superpixels(flat, n_segments=16)
    assert grid.max() + 1 == 16 and len(np.unique(grid[:8, :8])) == 1


@pytest.mark.parametrize("method", ["lime", "shap"])
@pytest.mark.parametrize("channels,size", [(3, 32), (1, 28)])
def test_superpixel_attribution_finds_the_region_that_matters(method, channels, size):
    rows, cols = slice(4, 12), slice(16, 26)  # not symmetric: a transposed or shifted mask would miss it
    image = region_image(size, channels, rows, cols)
    segments = explain.superpixels(image)
    x = explain.normalise(image, [0.3] * channels, [0.25] * channels)
    model = RegionModel(rows, cols)

    result = explain.superpixel_attribution(method, model, x, 1, segments, n_samples=200)

    assert result.attributions.shape == (channels, size, size)
    for s in range(segments.max() + 1):  # one value per superpixel, the same in every channel
        values = result.attributions[:, segments == s]
        assert np.ptp(values) == 0
    inside = np.zeros((size, size), dtype=bool)
    inside[rows, cols] = True
    top = int(np.argmax(result.per_segment))
    assert inside[segments == top].mean() > 0.5
    outside = [s for s in range(segments.max() + 1) if not inside[segments == s].any()]
    assert np.abs(result.per_segment[outside]).max() < 0.1 * result.per_segment[top]
    if method == "shap":  # efficiency: Shapley values add up to f(x) − f(baseline)
        forward = explain.probability_function(model)
        gap = float(forward(x)[0, 1] - forward(explain.baseline_image(x))[0, 1])
        assert result.per_segment.sum() == pytest.approx(gap, abs=1e-3)
    again = explain.superpixel_attribution(method, model, x, 1, segments, n_samples=200)
    np.testing.assert_array_equal(again.attributions, result.attributions)  # seeded


def test_baselines():
    x = torch.randn(1, 3, 8, 8)
    mean = explain.baseline_image(x, "mean")
    torch.testing.assert_close(mean[0, :, 3, 5], x.mean(dim=(2, 3))[0])
    assert (explain.baseline_image(x, "zeros") == 0).all()
    with pytest.raises(DojoError, match="Did you mean 'zeros'"):
        explain.baseline_image(x, "zero")


# ---------------------------------------------------------------------------- images, targets, methods


def test_load_image_resizes_and_converts(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 64, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    grey = explain.load_image(tmp_path / "wide.png", 28, 1)
    assert grey.shape == (28, 28, 1) and grey.dtype == np.uint8
    colour = explain.load_image(tmp_path / "alpha.png", 32, 3)
    assert colour.shape == (32, 32, 3)
    x = explain.normalise(colour, [0.5, 0.4, 0.3], [0.2, 0.2, 0.2])
    torch.testing.assert_close(x[0, 1, 7, 9], torch.tensor((colour[7, 9, 1] / 255 - 0.4) / 0.2, dtype=torch.float32))

    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DojoError, match="cannot read .*notes.png as an image"):
        explain.load_image(tmp_path / "notes.png", 32, 3)
    with pytest.raises(DojoError, match="does not exist"):
        explain.load_image(tmp_path / "missing.jpg", 32, 3)


def test_targets_and_methods():
    classes = ["airplane", "automobile", "bird", "cat"]
    assert explain.resolve_target(None, classes, predicted=2) == 2
    assert explain.resolve_target("Cat", classes, predicted=0) == 3
    assert explain.resolve_target("1", classes, predicted=0) == 1
    with pytest.raises(DojoError, match=r"unknown target class 'cta'.*Did you mean 'cat'.*0=airplane, 1=automobile"):
        explain.resolve_target("cta", classes, predicted=0)
    with pytest.raises(DojoError, match="unknown target class '7'"):
        explain.resolve_target(7, classes, predicted=0)
    assert explain.parse_methods("all") == ["gradcam", "lime", "shap"]
    assert explain.parse_methods("shap, lime") == ["shap", "lime"]
    with pytest.raises(DojoError, match="Did you mean 'gradcam'"):
        explain.parse_methods("gradcm")


# ---------------------------------------------------------------------------- the command, end to end


@pytest.fixture(scope="module")
def smoke_run(synthetic_root, tmp_path_factory):
    """A finished `cifar10-airbench94 --preset smoke` run on the synthetic CIFAR-10 fixture, and an image."""
    root = tmp_path_factory.mktemp("explain")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLDOJO_DATA", str(synthetic_root))
        patch.setenv("DLDOJO_OFFLINE", "1")
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        code = main(["run", "cifar10-airbench94", "--preset", "smoke", "--quiet", "--no-report",
                     "--out", str(root / "runs")])
    assert code == 0
    (run_dir,) = [p.parent for p in (root / "runs").rglob("classifier.json")]
    Image.fromarray(shapes_image(40, 48, seed=3)).save(root / "deer.png")  # not the model's size: resized
    return run_dir, root / "deer.png"


def test_explain_command_writes_overlays(smoke_run, tmp_path, capsys):
    run_dir, image = smoke_run
    code = main(["explain", str(run_dir), "--image", str(image), "--method", "all", "--target", "deer",
                 "--out", str(tmp_path), "--samples", "60"])
    out = capsys.readouterr().out
    assert code == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["deer-deer-all.png", "deer-deer-gradcam.png", "deer-deer-lime.png", "deer-deer-shap.png"]
    for name in names:
        with Image.open(tmp_path / name) as png:
            assert png.format == "PNG" and png.width > 300
        assert f"wrote {tmp_path / name}" in out
    assert "top-5 predicted classes" in out and "target class: deer (index 4)" in out
    assert "Grad-CAM layer groups.2" in out
    assert len([line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.", "4.", "5.")]) == 5

    code = main(["explain", str(run_dir), "--image", str(image), "--method", "gradcam", "--out", str(tmp_path / "one")])
    assert code == 0 and len(list((tmp_path / "one").glob("*-gradcam.png"))) == 1


def test_explain_command_errors(smoke_run, tmp_path, capsys):
    run_dir, image = smoke_run
    code = main(["explain", str(run_dir), "--image", str(image), "--method", "gradcm", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown explanation method 'gradcm'" in err and "Did you mean 'gradcam'" in err

    code = main(["explain", str(run_dir), "--image", str(image), "--target", "giraffe", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown target class 'giraffe'" in err and "0=airplane" in err and "9=truck" in err

    code = main(["explain", str(tmp_path), "--image", str(image)])
    assert code == 2 and "is not a dldojo run directory" in capsys.readouterr().err

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    code = main(["explain", str(run_dir), "--image", str(tmp_path / "broken.jpg"), "--out", str(tmp_path)])
    assert code == 2 and "cannot read" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_explain_help_describes_each_method(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["explain", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for words in ("gradcam  Grad-CAM", "lime     LIME", "shap     KernelSHAP", "--target CLASS", "--samples N"):
        assert words in out
