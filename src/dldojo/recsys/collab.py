"""Collaborative filtering with embeddings: `collab-dot`, `collab-bias`, `collab-nn`.

Curriculum: recommender systems, latent factors learned by gradient descent (fast.ai lesson 8 /
"Deep Learning for Coders" ch. 8; Koren, Bell & Volinsky 2009, "Matrix Factorization Techniques for
Recommender Systems").

    collab-dot:   r̂_ui = p_u · q_i
    collab-bias:  r̂_ui = lo + (hi - lo) · σ(p_u · q_i + b_u + b_i)        (y_range (lo, hi) = (0, 5.5))
    collab-nn:    r̂_ui = lo + (hi - lo) · σ(MLP([p_u ; q_i]))

Loss: mean squared error on observed ratings; AdamW (decoupled weight decay on every table) with a
one-cycle learning-rate schedule, as fastai's `fit_one_cycle`.
Reference: fastai `EmbeddingDotBias` reaches valid MSE 0.811 after 5 epochs (lr 5e-3, wd 0.1,
50 factors, random 20 % validation).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
from torch import nn

from dldojo.data import movielens
from dldojo.engine.errors import DojoError
from dldojo.engine.fit import fit
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.engine.schedules import OneCycle
from dldojo.recsys import common

Split = Literal["random", "u1", "u2", "u3", "u4", "u5"]


@dataclasses.dataclass
class CollabConfig:
    RANGES: ClassVar[dict] = {
        "n_factors": (1, 4096), "epochs": (1, 10**4), "batch_size": (1, 10**6),
        "weight_decay": (0, 1000), "init_std": (0, 10), "y_low": (-100, 100), "y_high": (-100, 100),
        "max_ratings": (0, 10**8), "report_user": (1, movielens.USERS)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    split: Split = "random"
    """'random' = fixed 80/20 split of u.data (seed 42); 'u1'..'u5' = official base/test folds."""
    n_factors: int = 50
    """Length of each user and movie embedding (number of latent factors)."""
    epochs: int = 5
    """Passes over the training ratings."""
    batch_size: int = 64
    """Ratings per optimiser step."""
    lr: float = 5e-3
    """Peak learning rate of the one-cycle schedule."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay on all embedding tables."""
    init_std: float = 0.01
    """Standard deviation of the normal initialisation of embeddings."""
    y_low: float = 0.0
    """Lower end of the sigmoid output range (collab-bias, collab-nn)."""
    y_high: float = 5.5
    """Upper end of the sigmoid output range; a bit above 5 so that 5 stars is reachable."""
    max_ratings: int = 0
    """Train on only the first N training ratings (0 = all); for smoke tests."""
    report_user: int = 1
    """User id (1-based) whose top-10 list goes into the report."""

    def validate(self) -> None:
        for key in ("n_factors", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise DojoError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise DojoError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise DojoError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.y_low < self.y_high:
            raise DojoError(f"need y_low < y_high, got ({self.y_low}, {self.y_high})")


@dataclasses.dataclass
class CollabNNConfig(CollabConfig):
    RANGES: ClassVar[dict] = {**CollabConfig.RANGES, "hidden": (1, 8192), "dropout": (0, 0.99)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    hidden: int = 100
    """Width of the MLP's hidden layer."""
    dropout: float = 0.1
    """Dropout before the MLP's output layer."""


def sigmoid_range(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.sigmoid(x)


class DotProduct(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_factors: int, init_std: float = 0.01):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, n_factors)  # p_u
        self.item_factors = nn.Embedding(n_items, n_factors)  # q_i
        for table in (self.user_factors, self.item_factors):
            nn.init.normal_(table.weight, std=init_std)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        return (self.user_factors(user) * self.item_factors(item)).sum(1)


class DotProductBias(DotProduct):
    def __init__(self, n_users: int, n_items: int, n_factors: int, init_std: float = 0.01,
                 y_range: tuple[float, float] = (0.0, 5.5)):
        super().__init__(n_users, n_items, n_factors, init_std)
        self.user_bias = nn.Embedding(n_users, 1)  # b_u
        self.item_bias = nn.Embedding(n_items, 1)  # b_i
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.y_range = y_range

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        score = super().forward(user, item) + self.user_bias(user)[:, 0] + self.item_bias(item)[:, 0]
        return sigmoid_range(score, *self.y_range)


class CollabNN(nn.Module):
    def __init__(self, n_users: int, n_items: int, n_factors: int, hidden: int, dropout: float,
                 init_std: float = 0.01, y_range: tuple[float, float] = (0.0, 5.5)):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, n_factors)
        self.item_factors = nn.Embedding(n_items, n_factors)
        for table in (self.user_factors, self.item_factors):
            nn.init.normal_(table.weight, std=init_std)
        self.mlp = nn.Sequential(nn.Linear(2 * n_factors, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))
        self.y_range = y_range

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.user_factors(user), self.item_factors(item)], dim=1)
        return sigmoid_range(self.mlp(x)[:, 0], *self.y_range)


def make_model(kind: str, cfg: CollabConfig, n_users: int, n_items: int) -> nn.Module:
    y_range = (cfg.y_low, cfg.y_high)
    if kind == "collab-dot":
        return DotProduct(n_users, n_items, cfg.n_factors, cfg.init_std)
    if kind == "collab-bias":
        return DotProductBias(n_users, n_items, cfg.n_factors, cfg.init_std, y_range)
    return CollabNN(n_users, n_items, cfg.n_factors, cfg.hidden, cfg.dropout, cfg.init_std, y_range)


def train_collab(kind: str, ctx: RunContext, cfg: CollabConfig) -> dict[str, float]:
    data, train, test = common.load_split(cfg.split, cfg.max_ratings, report_user=cfg.report_user)
    common.save_shape(ctx, data)
    model = make_model(kind, cfg, data.n_users, data.n_items)
    tensors = (torch.as_tensor(train.user), torch.as_tensor(train.item), torch.as_tensor(train.rating))
    steps = cfg.epochs * -(-len(train) // cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    scheduler = OneCycle(optimizer, cfg.lr, steps)  # fastai's fit_one_cycle defaults
    predict = common.predictor(model)

    def loss_fn(net: nn.Module, batch) -> torch.Tensor:
        user, item, rating = batch
        return nn.functional.mse_loss(net(user, item), rating)

    metrics = fit(ctx, model, optimizer, tensors, loss_fn, epochs=cfg.epochs, batch_size=cfg.batch_size,
                  scheduler=scheduler, evaluate=lambda: common.evaluate(predict, test))
    ctx.save_weights(model.state_dict())
    item_bias = model.item_bias.weight[:, 0].detach().numpy() if kind == "collab-bias" else None
    common.report_pictures(ctx, data, train, predict, model.item_factors.weight.detach().numpy(), item_bias,
                           user=cfg.report_user - 1)
    return metrics


def _register(kind: str, detail: str, config_cls: type, presets: dict, references=(), target=None) -> None:
    register(Experiment(
        name=kind,
        topic=f"Recommender systems: collaborative filtering with embeddings ({detail})",
        paper="Koren, Bell & Volinsky 2009, Matrix Factorization Techniques for Recommender Systems; "
              "Howard & Gugger 2020, Deep Learning for Coders ch. 8",
        config_cls=config_cls, presets=presets,
        run=lambda ctx, cfg: train_collab(kind, ctx, cfg),
        build_model=lambda cfg, run: make_model(kind, cfg, *common.shape(run)),
        metric="test_mse", direction="min", datasets=("ml-100k",), references=references, target=target,
        family="recsys", threads=1,  # embedding lookups of a few rows: threads only add sync overhead
    ))


SMOKE = {"epochs": 1, "max_ratings": 2000, "batch_size": 256}
FASTAI_REF = Reference(0.811, "fastai EmbeddingDotBias, 5 epochs fit_one_cycle(5e-3, wd=0.1), 50 factors",
                       "random 20 % validation (fast.ai lesson / book ch. 8)")

_register("collab-dot", "dot product of user and movie embeddings, no bias", CollabConfig,
          {"smoke": SMOKE, "quick": {"epochs": 5}, "full": {"epochs": 10}})
_register("collab-bias", "dot product + user/movie bias, sigmoid range, weight decay", CollabConfig,
          {"smoke": SMOKE, "quick": {"epochs": 5},  # quick = fastai's exact setting
           # full: the best of a sweep over batch size, epochs, wd, lr, factors (see results/)
           "full": {"epochs": 6, "batch_size": 256, "weight_decay": 0.2}},
          (FASTAI_REF,), target=0.78)
_register("collab-nn", "concatenated embeddings fed to an MLP", CollabNNConfig,
          {"smoke": SMOKE, "quick": {"epochs": 5},
           "full": {"epochs": 15, "batch_size": 1024, "lr": 0.01, "weight_decay": 1.0, "dropout": 0.3}})
