"""MovieLens-100k (Harper & Konstan 2015): 100,000 ratings 1-5 by 943 users on 1,682 movies.

Files used: `u.data` (user, item, rating, timestamp; tab separated), `u.item` (Latin-1, `|` separated,
title in column 2) and the official five-fold split `u1.base` / `u1.test` ... `u5.base` / `u5.test`.
User and item ids are 1-based in the files and 0-based here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dldojo.data.store import Dataset, locate, register_dataset, write_manifest
from dldojo.engine.errors import DojoError

USERS = 943
"""Users in MovieLens-100k (ids 1..943): the range of a recommender's `report_user`."""


@dataclasses.dataclass
class Ratings:
    """Parallel arrays of (user, item, rating), 0-based ids."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray

    def __len__(self) -> int:
        return len(self.rating)

    def subset(self, index: np.ndarray) -> Ratings:
        return Ratings(self.user[index], self.item[index], self.rating[index])


@dataclasses.dataclass
class MovieLens:
    ratings: Ratings
    titles: list[str]
    folder: Path

    @property
    def n_users(self) -> int:
        return int(self.ratings.user.max()) + 1

    @property
    def n_items(self) -> int:
        return max(len(self.titles), int(self.ratings.item.max()) + 1)


def read_ratings(path: Path) -> Ratings:
    table = np.loadtxt(path, dtype=np.int64, delimiter="\t", ndmin=2)
    if table.shape[1] != 4:
        raise DojoError(f"{path}: expected 4 tab-separated columns (user item rating timestamp)")
    return Ratings(table[:, 0] - 1, table[:, 1] - 1, table[:, 2].astype(np.float32))


def read_titles(path: Path) -> list[str]:
    titles = []
    for line in path.read_bytes().decode("latin-1").splitlines():
        if line.strip():
            fields = line.split("|")
            titles.append(fields[1])
    return titles


def load(folder: Path | None = None) -> MovieLens:
    folder = Path(folder) if folder is not None else locate("ml-100k")
    return MovieLens(read_ratings(folder / "u.data"), read_titles(folder / "u.item"), folder)


def random_split(ratings: Ratings, test_fraction: float = 0.2, seed: int = 42) -> tuple[Ratings, Ratings]:
    """Rows of u.data in file order, permuted by `default_rng(seed)`; the first `test_fraction` are test."""
    perm = np.random.default_rng(seed).permutation(len(ratings))
    n_test = int(round(len(ratings) * test_fraction))
    return ratings.subset(np.sort(perm[n_test:])), ratings.subset(np.sort(perm[:n_test]))


def official_fold(data: MovieLens, k: int) -> tuple[Ratings, Ratings]:
    """The official k-th fold (u{k}.base / u{k}.test), k in 1..5."""
    if k not in range(1, 6):
        raise DojoError(f"official MovieLens-100k folds are u1..u5, got u{k}")
    return read_ratings(data.folder / f"u{k}.base"), read_ratings(data.folder / f"u{k}.test")


def split(data: MovieLens, name: str, seed: int = 42) -> tuple[Ratings, Ratings]:
    """'random' (80/20 with `seed`) or 'u1'...'u5' (official folds)."""
    if name == "random":
        return random_split(data.ratings, 0.2, seed)
    if len(name) == 2 and name[0] == "u" and name[1].isdigit():
        return official_fold(data, int(name[1]))
    raise DojoError(f"unknown split {name!r}: use 'random' or one of u1..u5")


def make_fixture(root: Path, n_users: int = 40, n_items: int = 60, n_ratings: int = 1200, seed: int = 0) -> Path:
    """A tiny synthetic ml-100k for tests: a rank-2 taste model with noise, in the official file formats
    (u.item in Latin-1), with its FIXTURE.json."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "ml-100k"
    folder.mkdir(parents=True, exist_ok=True)
    taste_u, taste_i = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    pairs = rng.choice(n_users * n_items, size=n_ratings, replace=False)
    users, items = pairs // n_items, pairs % n_items
    users[:n_users] = np.arange(n_users)  # every user and item appears at least once
    items[:n_items] = np.arange(n_items)
    score = 3 + (taste_u[users] * taste_i[items]).sum(1) + 0.3 * rng.normal(size=n_ratings)
    ratings = np.clip(np.rint(score), 1, 5).astype(int)
    lines = [f"{u + 1}\t{i + 1}\t{r}\t{880000000 + k}" for k, (u, i, r) in enumerate(zip(users, items, ratings))]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    titles = [f"Film {i + 1} (199{i % 10})" for i in range(n_items)]
    titles[0] = "Café Müller (1995)"  # exercises Latin-1 decoding
    item_lines = [f"{i + 1}|{t}|01-Jan-1995||http://example.invalid|" + "|".join("0" * 19) for i, t in enumerate(titles)]
    (folder / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("".join(f"{u + 1}|30|M|other|00000\n" for u in range(n_users)))
    fold_of = rng.permutation(n_ratings) % 5
    for k in range(5):
        (folder / f"u{k + 1}.base").write_text("".join(lines[j] + "\n" for j in range(n_ratings) if fold_of[j] != k))
        (folder / f"u{k + 1}.test").write_text("".join(lines[j] + "\n" for j in range(n_ratings) if fold_of[j] == k))
    write_manifest(folder)
    return folder


ML100K = register_dataset(Dataset(
    name="ml-100k",
    description="MovieLens 100K: 100,000 ratings (1-5), 943 users, 1,682 movies",
    files={
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
        "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
        "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
        "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
        "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
        "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
        "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
        "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
        "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
        "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
    },
    urls=("https://files.grouplens.org/datasets/movielens/ml-100k.zip",),
    archive_prefix="ml-100k",
    license="GroupLens research use only, no redistribution; cite Harper & Konstan 2015",
    loader=load,
    citation="F. M. Harper, J. A. Konstan. The MovieLens Datasets: History and Context. ACM TiiS 5(4), 2015.",
    fixture=make_fixture,
    max_extracted_bytes=40 << 20,  # ml-100k.zip unpacks to 16 MB
))
