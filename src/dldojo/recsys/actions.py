"""What a finished recommender run can do from Python (`dldojo.load(run_dir).recommend(user=42)`): the
`dldojo recommend` command as a function of the loaded run (declared in this family's `FAMILY.actions`)."""

from __future__ import annotations

from dldojo.engine.display import Table
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun


def recommend(run: LoadedRun, user: int, n: int = 10, min_ratings: int = 10) -> Table:
    """The `n` movies user `user` (MovieLens id, 1..943) has not rated that the model predicts they rate
    highest, among movies with at least `min_ratings` ratings: rows of rank, title and predicted rating."""
    from dldojo.recsys.common import recommend_for

    for value, what in ((user, "user"), (n, "n"), (min_ratings, "min_ratings")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise DojoError(f"{what} must be an integer, got {value!r}.")
    if n < 1:
        raise DojoError(f"n must be at least 1, got {n}.")
    rows = recommend_for(run, user, n, min_ratings)
    return Table(({"rank": rank, "title": title, "predicted": score} for rank, (title, score) in enumerate(rows, 1)),
                 caption=f"{run.experiment.name}: top {n} unseen movies for user {user}")
