"""GANs (`dldojo.generative.gan`) and their judge (`dldojo.generative.judge`): the networks against the spec, the
losses against their formulas, Algorithm 1's k, the Fréchet distance, conditioning, and `dldojo sample`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from dldojo.cli import main
from dldojo.engine.config import build_config
from dldojo.engine.errors import DojoError
from dldojo.engine.launch import run_experiment
from dldojo.generative import gan
from dldojo.generative.judge import Judge, class_fractions, fit_gaussian, frechet_distance


def config(**overrides) -> gan.GANConfig:
    return build_config(gan.GANConfig, overrides, experiment="gan-mnist")


# ----- the networks against the spec -----

def test_mlp_gan_shapes_and_parameter_counts_match_the_curriculum():
    cfg = config()
    G, D = gan.build_generator(cfg), gan.build_discriminator(cfg)
    # G: z(100) → 128 → 256 → 512 → 1024 → 784; BatchNorm (γ, β) on the 2nd, 3rd and 4th hidden layers only
    g_params = (100 * 128 + 128) + (128 * 256 + 256 + 2 * 256) + (256 * 512 + 512 + 2 * 512) \
        + (512 * 1024 + 1024 + 2 * 1024) + (1024 * 784 + 784)
    d_params = (784 * 512 + 512) + (512 * 256 + 256) + (256 + 1)  # D: 784 → 512 → 256 → 1
    assert sum(p.numel() for p in G.parameters()) == g_params == 1_510_032
    assert sum(p.numel() for p in D.parameters()) == d_params == 533_505
    kinds = [type(m).__name__ for m in G.net]
    assert kinds == ["Linear", "LeakyReLU"] + ["Linear", "BatchNorm1d", "LeakyReLU"] * 3 + ["Linear", "Tanh"]
    assert all(m.negative_slope == 0.2 for m in [*G.net, *D.net] if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in D.modules())
    z = torch.randn(5, 100)
    x = G(z)
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1  # tanh: images in [−1, 1]
    assert D(x).shape == (5,)  # one logit per image; D(x) = σ(logit)


def test_dcgan_is_all_convolutional_32x32():
    cfg = config(arch="dcgan", dcgan_width=8)
    G, D = gan.build_generator(cfg), gan.build_discriminator(cfg)
    x = G(torch.randn(3, 100))
    assert x.shape == (3, 1, 32, 32) and D(x).shape == (3,)
    modules = [*G.modules(), *D.modules()]
    assert not any(isinstance(m, nn.Linear | nn.MaxPool2d | nn.AvgPool2d) for m in modules)  # no FC, no pooling
    assert [m.stride for m in G.modules() if isinstance(m, nn.ConvTranspose2d)] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert [m.stride for m in D.modules() if isinstance(m, nn.Conv2d)] == [(2, 2), (2, 2), (2, 2), (1, 1)]
    assert any(isinstance(m, nn.ReLU) for m in G.modules()) and not any(isinstance(m, nn.LeakyReLU) for m in G.modules())
    assert not isinstance(D.net[1], nn.BatchNorm2d)  # no BatchNorm on D's input layer


def test_dcgan64_is_the_curriculums_64x64_layout():
    # z(100) → 4×4×1024 → 8×8×512 → 16×16×256 → 32×32×128 → 64×64×3 with dcgan_width 128 (CIFAR-10: 3 channels)
    cfg = config(arch="dcgan64", dcgan_width=128, dataset="cifar10")
    G, D = gan.build_generator(cfg), gan.build_discriminator(cfg)
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(100, 1024), (1024, 512), (512, 256), (256, 128),
                                                                (128, 3)]
    weights = 100 * 1024 * 16 + 1024 * 512 * 16 + 512 * 256 * 16 + 256 * 128 * 16 + 128 * 3 * 16 + 3  # + last bias
    assert sum(p.numel() for p in G.parameters()) == weights + 2 * (1024 + 512 + 256 + 128)  # + BatchNorm γ, β
    assert [(m.in_channels, m.out_channels) for m in D.modules() if isinstance(m, nn.Conv2d)] == [
        (3, 128), (128, 256), (256, 512), (512, 1024), (1024, 1)]
    small = config(arch="dcgan64", dcgan_width=4, dataset="cifar10")
    g, d = gan.build_generator(small), gan.build_discriminator(small)
    x = g(torch.randn(2, 100))
    assert x.shape == (2, 3, 64, 64) and d(x).shape == (2,)


def test_dcgan_32_keeps_its_parameter_names_and_channels_follow_the_dataset():
    # the 32×32 networks are built by the same loop as the 64×64 ones; their state-dict keys did not change
    G = gan.build_generator(config(arch="dcgan", dcgan_width=8))
    assert [k for k in G.state_dict() if k.endswith("weight")] == [
        "net.0.weight", "net.1.weight", "net.3.weight", "net.4.weight", "net.6.weight", "net.7.weight", "net.9.weight"]
    assert gan.image_shape(config(arch="dcgan", dataset="fashion-mnist")) == (1, 32, 32)
    assert gan.image_shape(config(arch="mlp", dataset="cifar10")) == (3, 32, 32)
    assert gan.image_shape(config(arch="mlp")) == (1, 28, 28)


def test_colour_grid_and_what_the_judge_sees_of_64_px_samples():
    images = torch.rand(6, 3, 4, 5)
    grid = gan.image_grid(images, rows=2)
    assert grid.shape == (8, 15, 3) and grid.dtype == torch.uint8
    torch.testing.assert_close(grid[4:8, 5:10], (images[4].permute(1, 2, 0) * 255).round().to(torch.uint8))
    assert gan.image_grid(torch.rand(4, 1, 3, 3), rows=2).shape == (6, 6)  # grey stays 2-D
    big = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(gan.judge_view(big), torch.nn.functional.avg_pool2d(big, 2))
    small = torch.rand(2, 1, 32, 32)
    assert gan.judge_view(small) is small
    cfg = config(arch="dcgan64", dataset="cifar10")
    enlarged = gan.enlarge(torch.rand(2, 3, 32, 32), cfg)
    assert enlarged.shape == (2, 3, 64, 64)


def test_cgan_label_conditioning_changes_the_output():
    torch.manual_seed(0)
    cfg = config(conditional=True)
    G, D = gan.build_generator(cfg).eval(), gan.build_discriminator(cfg)
    z = torch.randn(4, 100).repeat(2, 1)
    y = torch.tensor([0, 1, 2, 3, 7, 7, 7, 7])
    x = G(z, y)
    assert (x[:4] - x[4:]).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # same z, other digit: another image
    assert (D(x[:4], y[:4]) - D(x[:4], y[4:])).abs().min() > 1e-6  # D judges the (image, label) pair
    # the embedding adds 10 × 10 to each network and widens its first layer by 10 inputs
    plain = gan.build_generator(config())
    assert sum(p.numel() for p in G.parameters()) - sum(p.numel() for p in plain.parameters()) == 10 * 10 + 10 * 128


# ----- the losses -----

def test_gan_losses_equal_their_bce_formulas():
    a, b = torch.randn(64), torch.randn(64)  # D's logits on real and on fake images
    D_x, D_Gz = torch.sigmoid(a), torch.sigmoid(b)
    # D minimises −[log D(x) + log(1 − D(G(z)))], i.e. ascends V(D, G)
    torch.testing.assert_close(gan.discriminator_loss(a, b), -(D_x.log() + (1 - D_Gz).log()).mean())
    # G, non-saturating (the default, Goodfellow et al. §3): −log D(G(z)); minimax: log(1 − D(G(z)))
    torch.testing.assert_close(gan.generator_loss(b), -D_Gz.log().mean())
    torch.testing.assert_close(gan.generator_loss(b, "minimax"), (1 - D_Gz).log().mean())
    assert config().generator_loss == "non_saturating"
    # at the equilibrium D ≡ ½: 2 log 2 and log 2
    half = torch.zeros(8)
    assert math.isclose(gan.discriminator_loss(half, half).item(), gan.EQUILIBRIUM_D_LOSS, rel_tol=1e-6)
    assert math.isclose(gan.generator_loss(half).item(), gan.EQUILIBRIUM_G_LOSS, rel_tol=1e-6)


def test_discriminator_step_ascends_v_and_minimax_generator_loss_saturates():
    torch.manual_seed(0)
    D = nn.Linear(4, 1)
    x, fake = torch.randn(32, 4) + 1, torch.randn(32, 4) - 1

    def V() -> float:
        return (torch.sigmoid(D(x)).log() + (1 - torch.sigmoid(D(fake))).log()).mean().item()

    before = V()
    gan.discriminator_loss(D(x).squeeze(1), D(fake).squeeze(1)).backward()
    with torch.no_grad():
        for p in D.parameters():
            p -= 0.1 * p.grad
    assert V() > before  # the sign is right: D's step increases log D(x) + log(1 − D(G(z)))
    # where D rejects a fake confidently (logit −8, D(G(z)) ≈ 3e-4) the minimax loss has almost no slope
    b = torch.full((1,), -8.0, requires_grad=True)
    (minimax,) = torch.autograd.grad(gan.generator_loss(b, "minimax"), b)
    (non_saturating,) = torch.autograd.grad(gan.generator_loss(b), b)
    assert abs(minimax.item()) < 1e-3 < 0.99 < abs(non_saturating.item())
    assert minimax.item() < 0 and non_saturating.item() < 0  # both push D(G(z)) up


# ----- Algorithm 1's k -----

@pytest.mark.parametrize("k", [1, 3, 20])
def test_discriminator_is_updated_k_times_per_generator_update(k):
    """Goodfellow et al. 2014, Algorithm 1: each iteration takes k D-steps (each on a fresh real minibatch),
    then one G-step. The paper's experiments used k = 1 (errata item 5)."""
    torch.manual_seed(0)
    cfg = config(k=k, g_hiddens=(8, 8), d_hiddens=(8,), batch_size=4)
    G, D = gan.build_generator(cfg), gan.build_discriminator(cfg)
    opt_g, opt_d = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
    steps = {"D": 0, "G": 0}
    opt_d.register_step_post_hook(lambda *_: steps.__setitem__("D", steps["D"] + 1))
    opt_g.register_step_post_hook(lambda *_: steps.__setitem__("G", steps["G"] + 1))
    batches = gan.Minibatches(torch.rand(400, 1, 28, 28) * 2 - 1, torch.zeros(400, dtype=torch.long), 4,
                              torch.Generator().manual_seed(0))
    g_before = [p.detach().clone() for p in G.parameters()]
    for iteration in range(1, 3):
        gan.train_iteration(G, D, opt_g, opt_d, batches, torch.Generator().manual_seed(iteration), cfg)
        assert steps == {"D": k * iteration, "G": iteration}
        assert batches.position == 4 * k * iteration  # k real minibatches per iteration
    assert all(not torch.equal(a, b) for a, b in zip(g_before, G.parameters()))  # and G did move
    assert config().k == 1  # the paper's setting is the default


# ----- the judge: Fréchet distance, features, class histogram -----

def sqrtm_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """pytorch-fid's formula (Heusel et al.'s reference code): scipy.linalg.sqrtm of Σ₁Σ₂."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_frechet_distance_is_zero_for_identical_sets_and_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16)) + 0.5
    assert abs(frechet_distance(*fit_gaussian(a), *fit_gaussian(a))) < 1e-8
    expected = sqrtm_frechet(*fit_gaussian(a), *fit_gaussian(b))
    assert expected > 1
    assert math.isclose(frechet_distance(*fit_gaussian(a), *fit_gaussian(b)), expected, rel_tol=1e-8)
    # symmetric, like the 2-Wasserstein distance it is the square of
    assert math.isclose(frechet_distance(*fit_gaussian(b), *fit_gaussian(a)), expected, rel_tol=1e-8)


def test_frechet_distance_equals_the_direct_formula_for_diagonal_gaussians():
    # N(μ₁, diag s₁²) vs N(μ₂, diag s₂²): d² = ‖μ₁ − μ₂‖² + Σ_i (s₁ᵢ − s₂ᵢ)²
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 2.0, 1.5])
    direct = ((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum()
    assert math.isclose(frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)), direct, rel_tol=1e-12)
    with pytest.raises(DojoError, match="different dimensions"):
        frechet_distance(mu1, np.eye(3), mu2[:2], np.eye(2))


def test_judge_features_are_the_input_of_the_last_linear_layer_and_fractions_count_classes():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 6), nn.ReLU())
    model = nn.Sequential(body, nn.Linear(6, 10))
    judge = Judge(model, mean=[0.5], std=[0.25], batch_size=3)
    images = torch.rand(7, 1, 32, 32)  # cropped to the central 28 × 28
    logits, features = judge(images)
    x = (images[..., 2:30, 2:30] - 0.5) / 0.25
    torch.testing.assert_close(features, body(x))
    torch.testing.assert_close(logits, model(x))
    np.testing.assert_allclose(class_fractions(np.array([0, 0, 3, 9])), [0.5, 0, 0, 0.25, 0, 0, 0, 0, 0, 0.25])


# ----- sampling and resuming -----

def test_sample_images_range_shape_and_labels():
    torch.manual_seed(0)
    G = gan.build_generator(config(conditional=True, g_hiddens=(8, 8)))
    images = gan.sample_images(G, 20, label=None, generator=torch.Generator().manual_seed(1))
    assert images.shape == (20, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    same = gan.sample_images(G, 20, label=None, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(images, same)
    sevens = gan.sample_images(G, 4, label=7, generator=torch.Generator().manual_seed(1))
    z = torch.randn(4, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # eval mode (BatchNorm's running statistics), label 7 for all, tanh range → [0, 1]
        torch.testing.assert_close(sevens, (G.eval()(z, torch.full((4,), 7)) + 1) / 2)
        torch.testing.assert_close(images[:10], (G(torch.randn(20, 100, generator=torch.Generator().manual_seed(1)),
                                                   torch.arange(20) % 10)[:10] + 1) / 2)  # label None: 0..9 in turn
    with pytest.raises(DojoError, match="digit 0..9"):
        gan.sample_images(G, 4, label=10, generator=torch.Generator())
    with pytest.raises(DojoError, match="not conditional"):
        gan.sample_images(gan.build_generator(config(g_hiddens=(8,))), 4, label=3, generator=torch.Generator())


def test_ema_update_is_the_moving_average_and_copies_batchnorm_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    average = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = [p.detach().clone() for p in average.parameters()]
    model(torch.randn(8, 3))  # moves BatchNorm's running statistics
    gan.ema_update(average, model, beta=0.9)
    for p_avg, p_old, p in zip(average.parameters(), before, model.parameters()):
        torch.testing.assert_close(p_avg, 0.9 * p_old + 0.1 * p)
    torch.testing.assert_close(average[1].running_mean, model[1].running_mean)
    assert int(average[1].num_batches_tracked) == 1


def test_minibatches_resume_where_they_stopped():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    a = gan.Minibatches(x, y, 3, torch.Generator().manual_seed(0))
    for _ in range(4):  # into the second pass (3 batches of 3 per pass, the tail of 1 dropped)
        a()
    b = gan.Minibatches(x, y, 3, torch.Generator().manual_seed(0))
    b.load_state_dict(a.state_dict())
    b.generator.set_state(a.generator.get_state())
    for _ in range(5):
        torch.testing.assert_close(a()[1], b()[1])


def test_bad_config_is_a_one_line_error():
    with pytest.raises(DojoError, match="arch=mlp only"):
        config(arch="dcgan", conditional=True).validate()
    with pytest.raises(DojoError, match="dataset"):
        config(dataset="imagenet")


# ----- dldojo sample on a finished cGAN run -----

def test_sample_command_draws_the_requested_digit_from_a_cgan_run(synthetic_data, tmp_path, capsys):
    from PIL import Image

    run_dir = run_experiment("cgan-mnist", preset="smoke", seed=0, quiet=True, report=False)["run_dir"]
    out = tmp_path / "sevens.png"
    assert main(["sample", run_dir, "--label", "7", "-n", "64", "--out", str(out)]) == 0
    assert "64 samples of class 7" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size[0] > 28 * 7
    assert main(["sample", run_dir, "--label", "12"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "digit 0..9" in err and "\n" not in err
