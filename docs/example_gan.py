"""Example: a GAN-style loop on engine v2 (Goodfellow et al. 2014), 2-D toy data: a ring of 8 Gaussians.

min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))]; the generator is trained on -log D(G(z)).
"""
import dataclasses
from typing import ClassVar

import torch
from torch import nn

from dldojo.engine.registry import Experiment, register


@dataclasses.dataclass
class GANConfig:
    RANGES: ClassVar[dict] = {"steps": (1, 10**6)}  # every int needs an upper bound; checked before the run
    steps: int = 2000
    """Training steps (one discriminator and one generator update each)."""
    lr: float = 1e-3
    """Adam learning rate of both networks."""


def mlp(n_in: int, n_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, n_out))


def build_model(cfg: GANConfig, run=None) -> nn.Module:
    return mlp(2, 2)  # the generator: z -> x


def ring(n: int, g: torch.Generator) -> torch.Tensor:
    angle = torch.randint(8, (n,), generator=g) * (torch.pi / 4)
    return torch.stack([angle.cos(), angle.sin()], 1) * 2 + 0.05 * torch.randn(n, 2, generator=g)


def run(ctx, cfg: GANConfig) -> dict[str, float]:
    G, D, bce = build_model(cfg), mlp(2, 1), nn.BCEWithLogitsLoss()
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), cfg.lr, betas=(0.5, 0.999)) for m in (G, D))
    state = {"G": G, "D": D, "opt_g": opt_g, "opt_d": opt_d}  # declared once: checkpoints and --resume
    data, noise = ctx.rng("data", "torch"), ctx.rng("noise", "torch")
    step = ctx.restore(state)
    while step < cfg.steps:
        x, z = ring(128, data), torch.randn(128, 2, generator=noise)
        loss_d = bce(D(x), torch.ones(128, 1)) + bce(D(G(z).detach()), torch.zeros(128, 1))
        opt_d.zero_grad(), loss_d.backward(), opt_d.step()
        loss_g = bce(D(G(z)), torch.ones(128, 1))
        opt_g.zero_grad(), loss_g.backward(), opt_g.step()
        step += 1
        if step % 100 == 0:
            ctx.log(step, loss_d=loss_d.item(), loss_g=loss_g.item())
        ctx.tick(step, state)
    ctx.save_weights(G.state_dict())
    with torch.no_grad():  # how far generated points fall from the ring of radius 2
        radius = G(torch.randn(4096, 2, generator=ctx.rng("eval", "torch"))).norm(dim=1)
    ctx.add_facts(generator_params=sum(p.numel() for p in G.parameters()))
    return {"eval_radius_error": (radius - 2).abs().mean().item()}


register(Experiment(
    name="example-gan", topic="Generative adversarial networks (docs example)", paper="Goodfellow et al. 2014",
    config_cls=GANConfig, presets={"smoke": {"steps": 200}, "quick": {}, "full": {"steps": 5000}},
    run=run, metric="eval_radius_error", direction="min", environment="toy 2-D ring", build_model=build_model,
))
