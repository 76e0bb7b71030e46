"""`dldojo recommend RUN_DIR --user ID`: a user's top-N unseen movies from a finished recommender run."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_recommend(args: argparse.Namespace) -> int:
    from dldojo.recsys.common import recommend

    for rank, (title, score) in enumerate(recommend(Path(args.run_dir), args.user, args.n, args.min_ratings), 1):
        print(f"{rank:3d}. {title}  (predicted {score:.2f})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="a user's top-N unseen movies from a finished recommender run")
    p.add_argument("run_dir")
    p.add_argument("--user", type=int, required=True, help="MovieLens user id (1..943)")
    p.add_argument("--n", type=int, default=10, help="how many movies (default 10)")
    p.add_argument("--min-ratings", type=int, default=10,
                   help="only movies with at least this many ratings (default 10)")
    p.set_defaults(func=cmd_recommend)
