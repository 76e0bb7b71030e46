"""What every recommender experiment shares: data splits, evaluation, report pictures, top-N lists.

Each recsys experiment registers a *predictor builder* here: given the run's config and saved weights it
returns `predict(users, items) -> ratings`, which is all that evaluation, the pictures and
`dldojo recommend` need.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dldojo.data import movielens
from dldojo.engine.errors import DojoError
from dldojo.engine.run import RunContext, load_weights
from dldojo.metrics import mse, rmse

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
PredictorBuilder = Callable[[dict[str, Any], dict[str, Any], int, int], Predict]
PREDICTORS: dict[str, PredictorBuilder] = {}


def load_split(split: str, max_ratings: int = 0, split_seed: int = 42):
    """(data, train, test) for 'random' (80/20, seed 42) or 'u1'..'u5'; `max_ratings` > 0 keeps a slice."""
    data = movielens.load()
    train, test = movielens.split(data, split, split_seed)
    if max_ratings:
        train = train.subset(np.arange(min(max_ratings, len(train))))
        test = test.subset(np.arange(min(max_ratings // 4 or 1, len(test))))
    return data, train, test


def evaluate(predict: Predict, test: movielens.Ratings, prefix: str = "test") -> dict[str, float]:
    pred = predict(test.user, test.item)
    return {f"{prefix}_mse": mse(pred, test.rating), f"{prefix}_rmse": rmse(pred, test.rating)}


def report_pictures(ctx: RunContext, data: movielens.MovieLens, train: movielens.Ratings, predict: Predict,
                    item_factors: np.ndarray | None, item_bias: np.ndarray | None, user: int = 0,
                    top_movies: int = 50) -> None:
    """Movie-factor map (PCA), most/least liked movies by bias, and a user's top-10 list."""
    import matplotlib.pyplot as plt

    counts = np.bincount(train.item, minlength=data.n_items)
    popular = np.argsort(-counts)[:top_movies]
    if item_factors is not None and len(popular) >= 3:
        centred = item_factors - item_factors.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)  # principal axes of all movie factors
        xy = centred[popular] @ vt[:2].T
        fig, ax = plt.subplots(figsize=(11, 9))
        ax.scatter(xy[:, 0], xy[:, 1], s=12, c="tab:blue")
        for (x, y), i in zip(xy, popular):
            ax.annotate(data.titles[i] if i < len(data.titles) else str(i), (x, y), fontsize=7)
        ax.set_title(f"Movie factors of the {top_movies} most-rated movies, first two principal components")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ctx.save_figure(fig, "movie_factors_pca")
    if item_bias is not None:
        seen = np.flatnonzero(counts >= 20)  # ignore movies with too few ratings to judge
        order = seen[np.argsort(item_bias[seen])]
        k = min(10, len(order) // 2)
        if k:
            rows = [{"rank": r + 1, "most liked": data.titles[i], "bias": float(item_bias[i]),
                     "least liked": data.titles[j], "bias ": float(item_bias[j])}
                    for r, (i, j) in enumerate(zip(order[::-1][:k], order[:k]))]
            ctx.save_table("movie_bias", rows, "Learned movie bias (movies with >= 20 training ratings): the "
                                               "part of a rating explained by the movie alone, whoever watches it.")
            shown = np.concatenate([order[:k], order[-k:]])
            fig, ax = plt.subplots(figsize=(9, 0.3 * len(shown) + 1))
            ax.barh(range(len(shown)), item_bias[shown], color=["tab:red"] * k + ["tab:green"] * k)
            ax.set_yticks(range(len(shown)), [data.titles[i] for i in shown], fontsize=8)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_xlabel("learned movie bias b_i")
            ax.set_title("Least (red) and most (green) liked movies by learned bias (>= 20 ratings)")
            ctx.save_figure(fig, "movie_bias")
    rows = [{"rank": r + 1, "title": t, "predicted": s} for r, (t, s) in
            enumerate(top_n(predict, data, user, 10))]
    ctx.save_table(f"top10_user{user + 1}", rows, f"Top-10 unseen movies for user {user + 1} "
                                                  f"(movies with >= 10 ratings).")


def top_n(predict: Predict, data: movielens.MovieLens, user: int, n: int = 10, min_ratings: int = 10):
    """The user's `n` highest-predicted movies among those they have not rated (in any split)."""
    if not 0 <= user < data.n_users:
        raise DojoError(f"user id {user + 1} is out of range: MovieLens-100k users are 1..{data.n_users}.")
    items = np.arange(data.n_items)
    counts = np.bincount(data.ratings.item, minlength=data.n_items)
    rated = data.ratings.item[data.ratings.user == user]
    candidates = items[(counts >= min_ratings) & ~np.isin(items, rated)]
    scores = predict(np.full(len(candidates), user), candidates)
    best = np.argsort(-scores, kind="stable")[:n]
    return [(data.titles[candidates[b]], float(scores[b])) for b in best]


def recommend(run_dir: Path, user_id: int, n: int = 10, min_ratings: int = 10) -> list[tuple[str, float]]:
    """Top-`n` unseen movies for 1-based `user_id` from a finished recsys run."""
    config = json.loads((Path(run_dir) / "config.json").read_text()) if (Path(run_dir) / "config.json").exists() \
        else None
    if config is None:
        raise DojoError(f"{run_dir} is not a dldojo run directory (no config.json).")
    name = config["experiment"]
    from dldojo.engine import registry

    registry.load_all()  # fills PREDICTORS
    if name not in PREDICTORS:
        raise DojoError(f"{run_dir} is a run of {name}, which is not a recommender (recsys runs: "
                        f"{', '.join(sorted(PREDICTORS))}).")
    data = movielens.load()
    predict = PREDICTORS[name](config["config"], load_weights(run_dir), data.n_users, data.n_items)
    return top_n(predict, data, user_id - 1, n, min_ratings)
