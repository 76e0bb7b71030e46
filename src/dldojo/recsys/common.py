"""What every recommender experiment shares: data splits, evaluation, report pictures, top-N lists.

Every recsys model is an `nn.Module` whose `forward(users, items)` returns predicted ratings. Each
experiment declares `build_model(cfg, run)`, which rebuilds that module for a finished run (the table
sizes come from `shape.json`, saved by `save_shape`); `dldojo recommend` loads it through
`engine.reload.load_run` and ranks a user's unseen movies with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dldojo.data import movielens
from dldojo.engine.errors import DojoError
from dldojo.engine.plotting import label_points
from dldojo.engine.reload import LoadedRun, load_run
from dldojo.engine.run import RunContext
from dldojo.metrics import mse, rmse

Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
SHAPE_FILE = "shape.json"
PCA_LABELS_PER_END = 4  # movies named at each end of each principal component in the movie-factor map


def load_split(split: str, max_ratings: int = 0, split_seed: int = 42, report_user: int | None = None):
    """(data, train, test) for 'random' (80/20, seed 42) or 'u1'..'u5'; `max_ratings` > 0 keeps a slice.
    `report_user` (1-based) is checked against the data here, before any training."""
    data = movielens.load()
    if report_user is not None:
        check_user(data, report_user - 1)
    train, test = movielens.split(data, split, split_seed)
    if max_ratings:
        train = train.subset(np.arange(min(max_ratings, len(train))))
        test = test.subset(np.arange(min(max_ratings // 4 or 1, len(test))))
    return data, train, test


def evaluate(predict: Predict, test: movielens.Ratings, prefix: str = "test") -> dict[str, float]:
    pred = predict(test.user, test.item)
    return {f"{prefix}_mse": mse(pred, test.rating), f"{prefix}_rmse": rmse(pred, test.rating)}


def predictor(model: torch.nn.Module) -> Predict:
    """`predict(users, items)` on NumPy ids with a rating model (in eval mode, without gradients)."""
    def predict(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return model(torch.as_tensor(users), torch.as_tensor(items)).numpy().astype(np.float64)
    return predict


def save_shape(ctx: RunContext, data: movielens.MovieLens) -> None:
    """Record the user and movie counts the model's tables were built for (read back by `shape`)."""
    ctx.save_json(SHAPE_FILE, {"n_users": data.n_users, "n_items": data.n_items})


def shape(run: LoadedRun) -> tuple[int, int]:
    """(n_users, n_items) of a finished run's model."""
    saved = run.read_json(SHAPE_FILE)
    return int(saved["n_users"]), int(saved["n_items"])


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
        ends = extremes(xy, per_end=PCA_LABELS_PER_END)
        fig, ax = plt.subplots(figsize=(10, 8))
        ax.scatter(xy[:, 0], xy[:, 1], s=12, c="0.6")
        ax.scatter(xy[ends, 0], xy[ends, 1], s=16, c="tab:blue")
        label_points(ax, xy[ends], [data.titles[i] if i < len(data.titles) else str(i) for i in popular[ends]],
                     avoid=xy)
        ax.set_title(f"Movie factors of the {len(popular)} most-rated movies, first two principal components\n"
                     f"(named: the {PCA_LABELS_PER_END} at each end of each component)")
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


def extremes(xy: np.ndarray, per_end: int) -> np.ndarray:
    """Row indices of the `per_end` lowest and highest points along each column of `xy`, each once, the most
    extreme first (the points worth naming in a scatter plot: the ends of its axes)."""
    order = [np.argsort(xy[:, d]) for d in range(xy.shape[1])]
    ranked = [int(i) for k in range(min(per_end, len(xy))) for o in order for i in (o[-k - 1], o[k])]
    return np.array(list(dict.fromkeys(ranked)), dtype=int)


def check_user(data: movielens.MovieLens, user: int) -> None:
    """`user` (0-based) must be one of the data's users."""
    if not 0 <= user < data.n_users:
        raise DojoError(f"user id {user + 1} is out of range: MovieLens-100k users are 1..{data.n_users}.")


def top_n(predict: Predict, data: movielens.MovieLens, user: int, n: int = 10, min_ratings: int = 10):
    """The user's `n` highest-predicted movies among those they have not rated (in any split)."""
    check_user(data, user)
    items = np.arange(data.n_items)
    counts = np.bincount(data.ratings.item, minlength=data.n_items)
    rated = data.ratings.item[data.ratings.user == user]
    candidates = items[(counts >= min_ratings) & ~np.isin(items, rated)]
    scores = predict(np.full(len(candidates), user), candidates)
    best = np.argsort(-scores, kind="stable")[:n]
    return [(data.titles[candidates[b]], float(scores[b])) for b in best]


def recommend(run_dir: Path, user_id: int, n: int = 10, min_ratings: int = 10) -> list[tuple[str, float]]:
    """Top-`n` unseen movies for 1-based `user_id` from a finished recsys run."""
    return recommend_for(load_run(run_dir, family="recsys"), user_id, n, min_ratings)


def recommend_for(run: LoadedRun, user_id: int, n: int = 10, min_ratings: int = 10) -> list[tuple[str, float]]:
    """Top-`n` unseen movies for 1-based `user_id` from a loaded recsys run."""
    data = movielens.load()
    if shape(run) != (data.n_users, data.n_items):
        n_users, n_items = shape(run)
        raise DojoError(f"{run.run_dir} was trained on ratings of {n_users} users and {n_items} movies, but the "
                        f"ml-100k found now has {data.n_users} and {data.n_items}; point DLDOJO_DATA at the "
                        f"data it was trained on.")
    return top_n(predictor(run.model), data, user_id - 1, n, min_ratings)
