"""vae-mnist: the ELBO's two terms against torch.distributions, the KL term against a Monte-Carlo estimate, the
reparameterised sample's moments, the importance-weighted bound's ordering, learning on real MNIST, and
`dldojo sample` (the family's command and Python action)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

from dldojo.cli import main
from dldojo.engine.errors import DojoError
from dldojo.engine.launch import run_experiment
from dldojo.generative import vae
from dldojo.generative.vae import VAE, VAEConfig


def test_shapes_and_parameter_count():
    model = VAE(VAEConfig())
    # encoder 784·400 + 400, heads μ and log σ² 2 · (400·20 + 20), decoder 20·400 + 400 and 400·784 + 784
    assert sum(p.numel() for p in model.parameters()) == 314_000 + 16_040 + 8_400 + 314_384 == 652_824
    x = torch.rand(5, 784)
    logits, mu, logvar = model(x, torch.zeros(5, 20))
    assert logits.shape == (5, 784) and mu.shape == logvar.shape == (5, 20)
    images = vae.sample_images(model, 7, label=None, generator=torch.Generator().manual_seed(0))
    assert images.shape == (7, 1, 28, 28) and 0 <= images.min() and images.max() <= 1


def test_elbo_terms_equal_torch_distributions():
    """BCE_sum at z = μ + σε is −log Bernoulli(x | logits); the closed-form KL is torch's Normal-Normal KL."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden_size=32, latent_size=5)).double()
    x = torch.bernoulli(torch.full((8, 784), 0.3, dtype=torch.float64))
    eps = torch.randn(8, 5, dtype=torch.float64)
    bce, kl = vae.negative_elbo(model, x, eps=eps)
    mu, logvar = model.encode(x)
    z = mu + (0.5 * logvar).exp() * eps
    torch.testing.assert_close(bce, -Bernoulli(logits=model.decode_logits(z)).log_prob(x).sum(-1))
    torch.testing.assert_close(kl, kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1))


def test_kl_term_equals_a_monte_carlo_estimate():
    """KL(q ‖ p) = E_q[log q(z) − log p(z)]: 200,000 samples per row agree within 5 standard errors."""
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(3, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(3, 4, generator=g, dtype=torch.float64)
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
    z = q.sample((200_000,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # (samples, rows)
    estimate, standard_error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(z))
    closed = vae.kl_divergence(mu, logvar)
    assert torch.all((estimate - closed).abs() < 5 * standard_error), (estimate, closed, standard_error)
    assert torch.all(closed > 0)


def test_reparameterised_sample_has_mean_mu_and_variance_sigma_squared():
    N = 200_000
    mu = torch.tensor([0.0, 2.0, -1.5], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([0.0, math.log(0.25), math.log(4.0)], dtype=torch.float64, requires_grad=True)
    eps = torch.randn(N, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = vae.reparameterize(mu, logvar, eps)
    sigma2 = logvar.detach().exp()
    assert torch.all((z.mean(0) - mu).abs() < 5 * sigma2.sqrt() / math.sqrt(N))
    assert torch.all((z.var(0) - sigma2).abs() < 5 * sigma2 * math.sqrt(2 / N))  # Var of s² ≈ 2σ⁴ / N
    z.sum().backward()  # differentiable in μ and σ: ∂z/∂μ = 1, ∂z/∂log σ² = ½ σ ε
    torch.testing.assert_close(mu.grad, torch.full((3,), float(N), dtype=torch.float64))
    torch.testing.assert_close(logvar.grad, (0.5 * sigma2.sqrt() * eps).sum(0))


def test_importance_weighted_bound_is_above_the_elbo_and_grows_with_k():
    """On average over images: ELBO = E[L_1] ≤ L_10 ≤ L_100 ≤ log p(x) (Burda et al. 2016, Theorem 1)."""
    torch.manual_seed(3)
    model = VAE(VAEConfig(hidden_size=64, latent_size=8))
    x = torch.bernoulli(torch.full((200, 784), 0.2), generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        elbo = -torch.stack([sum(vae.negative_elbo(model, x, g)) for _ in range(20)]).mean()
    bounds = {k: vae.iwae_bound(model, x, k, g).mean() for k in (1, 10, 100)}
    assert abs(bounds[1] - elbo) < 1.0  # L_1 is a one-sample ELBO: equal in expectation
    assert elbo + 1.0 < bounds[10] < bounds[100]


def test_learns_on_a_real_mnist_slice(real_data):
    """300 Adam steps on 6,400 real training images: the test −ELBO falls from ~545 nats (a decoder with p = ½
    everywhere costs 784 · log 2; 302 after 10 steps) to below 160 (measured: 144.4 with seed 0)."""
    summary = run_experiment("vae-mnist", preset="smoke", seed=0, quiet=True, report=False, sets=[
        "train_images=6400", "test_images=1000", "epochs=3", "hidden_size=400", "iw_samples=50",
        "iw_test_images=100", "latent_map_run=false"])
    metrics = summary["metrics"]
    assert metrics["test_neg_elbo"] < 160, metrics
    assert metrics["test_nll_iwae"] < metrics["test_neg_elbo_iw_subset"], metrics  # the k-sample bound is tighter
    assert metrics["test_active_units"] >= 5, metrics


# ----- dldojo sample -----

@pytest.fixture
def smoke_vae(synthetic_data):
    return run_experiment("vae-mnist", preset="smoke", seed=0, quiet=True, report=False,
                          sets=["latent_map_run=false"])["run_dir"]


def test_sample_command_writes_a_png_grid(smoke_vae, tmp_path, capsys):
    from PIL import Image

    import dldojo

    out = tmp_path / "grid.png"
    assert main(["sample", smoke_vae, "-n", "10", "--seed", "3", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as im:  # 4 columns × 3 rows of 28 px with 2-px borders
        assert im.size == (4 * 30 + 2, 3 * 30 + 2)
    assert main(["sample", smoke_vae, "-n", "4"]) == 0  # default: RUN_DIR/samples/samples-n4-seed0.png
    assert (Path(smoke_vae) / "samples" / "samples-n4-seed0.png").is_file()
    r = dldojo.load(smoke_vae)
    assert "sample" in r.actions
    a, b, c = r.sample(n=4, seed=5), r.sample(n=4, seed=5), r.sample(n=4, seed=6)
    assert a.images.shape == (4, 1, 28, 28)
    torch.testing.assert_close(a.images, b.images)
    assert not torch.equal(a.images, c.images)


def test_sample_errors_are_one_line(smoke_vae, tmp_path, capsys):
    import dldojo

    def error(argv: list[str]) -> str:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
        return err

    assert "not conditional" in error(["sample", smoke_vae, "--label", "3"])
    assert "drop --label" in error(["sample", smoke_vae, "--label", "3"])
    assert "n must be an integer" in error(["sample", smoke_vae, "-n", "0"])
    assert "not a dldojo run directory" in error(["sample", str(tmp_path)])
    # a run of another family: its config.json is all the family check reads
    other = tmp_path / "runs" / "mnist-cnn" / "x"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({"experiment": "mnist-cnn", "preset": "smoke", "seed": 0,
                                                   "config": {}}))
    assert "needs a run of the generative family" in error(["sample", str(other)])
    with pytest.raises(DojoError, match="not conditional"):
        dldojo.load(smoke_vae).sample(n=4, label=1)
