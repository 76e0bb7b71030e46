"""`mf-sgd`: Funk-SVD matrix factorisation by explicit per-rating SGD, in NumPy.

Curriculum: matrix factorisation for recommendation, derived by hand (Funk 2006, "Netflix Update: Try
This at Home"; Koren, Bell & Volinsky 2009). The rating matrix R (users × movies, mostly missing) is
approximated by P Qᵀ; only observed entries count:

    r̂_ui = q_iᵀ p_u  [+ μ + b_u + b_i]          e_ui = r_ui − r̂_ui
    L = Σ_(u,i observed) e_ui² + λ (‖p_u‖² + ‖q_i‖² [+ b_u² + b_i²])

For one observed rating, gradient descent with step α gives (the factor 2 is the derivative of the
square, kept as the curriculum writes it):

    p_u ← p_u + 2α (e_ui q_i − λ p_u)
    q_i ← q_i + 2α (e_ui p_u − λ q_i)        (with the p_u just updated)
    b_u ← b_u + 2α (e_ui − λ b_u),   b_i ← b_i + 2α (e_ui − λ b_i)

Reference: published MF baselines on MovieLens-100k reach RMSE ≈ 0.91-0.94.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import nn

from dldojo.data import movielens
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.reload import LoadedRun
from dldojo.engine.run import RunContext
from dldojo.recsys import common


def sgd_update(P: np.ndarray, Q: np.ndarray, u: int, i: int, r: float, alpha: float, lam: float = 0.0,
               bias: tuple[np.ndarray, np.ndarray, float] | None = None) -> tuple[float, float]:
    """Apply one per-rating SGD step in place; returns (r̂ before the step, squared error)."""
    p, q = P[u], Q[i]
    r_hat = float(q @ p)
    if bias is not None:
        user_bias, item_bias, mu = bias
        r_hat += mu + user_bias[u] + item_bias[i]
    e = r - r_hat
    P[u] = p + 2 * alpha * (e * q - lam * p)
    Q[i] = q + 2 * alpha * (e * P[u] - lam * q)  # uses the already-updated p_u, as derived
    if bias is not None:
        user_bias[u] += 2 * alpha * (e - lam * user_bias[u])
        item_bias[i] += 2 * alpha * (e - lam * item_bias[i])
    return r_hat, e * e


def sgd_epoch_on_matrix(R: np.ndarray, P: np.ndarray, Q: np.ndarray, alpha: float, lam: float = 0.0) -> float:
    """One pass over a dense matrix with NaN for missing entries (row-major order, NaNs skipped).

    Returns the sum of squared errors seen during the pass. `Q` holds one row per movie (the columns
    q_i of the curriculum's Q matrix).
    """
    sse = 0.0
    for u, i in zip(*np.nonzero(~np.isnan(R))):
        sse += sgd_update(P, Q, int(u), int(i), float(R[u, i]), alpha, lam)[1]
    return sse


def predict_ratings(P: np.ndarray, Q: np.ndarray, users: np.ndarray, items: np.ndarray,
                    bias: tuple[np.ndarray, np.ndarray, float] | None = None) -> np.ndarray:
    r_hat = np.einsum("nk,nk->n", P[users], Q[items])
    if bias is not None:
        user_bias, item_bias, mu = bias
        r_hat = r_hat + mu + user_bias[users] + item_bias[items]
    return r_hat


@dataclasses.dataclass
class MFConfig:
    RANGES: ClassVar[dict] = {
        "n_factors": (1, 4096), "epochs": (0, 10**4), "lam": (0, 1000), "init_std": (0, 10),
        "max_ratings": (0, 10**8), "report_user": (1, movielens.USERS)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    split: Literal["random", "u1", "u2", "u3", "u4", "u5"] = "random"
    """'random' = fixed 80/20 split of u.data (seed 42); 'u1'..'u5' = official base/test folds."""
    n_factors: int = 50
    """Number of latent factors k (P is users × k, Q is movies × k)."""
    epochs: int = 20
    """Passes over the training ratings, each in a fresh random order."""
    alpha: float = 0.0025
    """SGD step α (the update uses 2α, so this equals 'lr 0.005' in the usual Funk-SVD form)."""
    lam: float = 0.02
    """L2 regularisation λ on factors and biases."""
    use_bias: bool = True
    """Add the global mean μ and the biases b_u, b_i to q_iᵀ p_u."""
    init_std: float = 0.1
    """Standard deviation of the normal initialisation of P and Q."""
    max_ratings: int = 0
    """Train on only the first N training ratings (0 = all); for smoke tests."""
    report_user: int = 1
    """User id (1-based) whose top-10 list goes into the report."""

    def validate(self) -> None:
        if self.n_factors < 1 or self.epochs < 1:
            raise DojoError("n_factors and epochs must be >= 1")
        if not self.alpha > 0 or self.lam < 0:
            raise DojoError(f"need alpha > 0 and lam >= 0, got alpha={self.alpha}, lam={self.lam}")


class FunkSVD(nn.Module):
    """P, Q, b_u, b_i and μ as buffers (float64, no autograd): `forward(users, items)` = r̂_ui. The training
    loop updates them in place through NumPy views; `dldojo recommend` rebuilds the module."""

    def __init__(self, P: np.ndarray, Q: np.ndarray, mu: float, use_bias: bool):
        super().__init__()
        self.use_bias = use_bias
        self.register_buffer("P", torch.from_numpy(P))
        self.register_buffer("Q", torch.from_numpy(Q))
        self.register_buffer("user_bias", torch.zeros(len(P), dtype=torch.float64))
        self.register_buffer("item_bias", torch.zeros(len(Q), dtype=torch.float64))
        self.register_buffer("mu", torch.tensor(mu, dtype=torch.float64))

    def bias(self) -> tuple[np.ndarray, np.ndarray, float] | None:
        return (self.user_bias.numpy(), self.item_bias.numpy(), float(self.mu)) if self.use_bias else None

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(predict_ratings(self.P.numpy(), self.Q.numpy(), users.numpy(), items.numpy(),
                                                self.bias()))


def run(ctx: RunContext, cfg: MFConfig) -> dict[str, float]:
    data, train, test = common.load_split(cfg.split, cfg.max_ratings, report_user=cfg.report_user)
    common.save_shape(ctx, data)
    init = ctx.rng("init")
    model = FunkSVD(init.normal(0, cfg.init_std, (data.n_users, cfg.n_factors)),
                    init.normal(0, cfg.init_std, (data.n_items, cfg.n_factors)),
                    float(train.rating.mean()) if cfg.use_bias else 0.0, cfg.use_bias)
    state = {"model": model, "metrics": {}}
    epoch = ctx.restore(state)
    P, Q, bias = model.P.numpy(), model.Q.numpy(), model.bias()  # views: the updates below change the model

    def predict(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return predict_ratings(P, Q, users, items, bias)

    users, items, ratings = train.user.tolist(), train.item.tolist(), train.rating.tolist()
    bar = ctx.progress(cfg.epochs, initial=epoch, unit="epoch")
    while epoch < cfg.epochs:
        sse = 0.0
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported by check_finite below
            for n in ctx.rng("order").permutation(len(ratings)).tolist():  # explicit per-rating SGD, as derived
                sse += sgd_update(P, Q, users[n], items[n], ratings[n], cfg.alpha, cfg.lam, bias)[1]
        epoch += 1
        ctx.check_finite(sse, epoch, hint="For mf-sgd lower alpha (--set alpha=0.001) or raise lam.")
        state["metrics"] = common.evaluate(predict, test)
        ctx.log(epoch, epoch=epoch, train_mse=sse / len(ratings), **state["metrics"])
        bar.update(1)
        bar.set_postfix(train_mse=f"{sse / len(ratings):.4f}", test_rmse=f"{state['metrics']['test_rmse']:.4f}")
        ctx.tick(epoch, state)
    bar.close()
    ctx.save_weights(model.state_dict())
    common.report_pictures(ctx, data, train, predict, Q, bias[1] if bias else None, user=cfg.report_user - 1)
    return state["metrics"]


def build_model(cfg: MFConfig, run: LoadedRun) -> FunkSVD:
    n_users, n_items = common.shape(run)
    return FunkSVD(np.zeros((n_users, cfg.n_factors)), np.zeros((n_items, cfg.n_factors)), 0.0, cfg.use_bias)


register(Experiment(
    name="mf-sgd",
    topic="Recommender systems: Funk-SVD matrix factorisation by per-rating SGD (NumPy)",
    paper="Funk 2006, Netflix Update: Try This at Home; Koren, Bell & Volinsky 2009",
    config_cls=MFConfig,
    presets={"smoke": {"epochs": 2, "max_ratings": 2000},
             "quick": {"epochs": 20},
             "full": {"epochs": 40, "alpha": 0.005, "lam": 0.08}},  # best of a small lam / alpha sweep
    run=run,
    build_model=build_model,
    metric="test_rmse",
    direction="min",
    datasets=("ml-100k",),
    references=(Reference(0.93, "published matrix-factorisation baselines on MovieLens-100k (0.91-0.94)",
                          "e.g. Surprise SVD 5-fold 0.934"),),
    family="recsys",
    threads=1,  # pure NumPy per-rating loop
))
