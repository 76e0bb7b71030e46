"""`dldojo classify RUN_DIR "text"` (naive Bayes runs) and `dldojo rules RUN_DIR --movie TITLE` (association rules)."""

from __future__ import annotations

import argparse
import sys


def cmd_classify(args: argparse.Namespace) -> int:
    from dldojo.classic.actions import NB_EXPERIMENTS, classify
    from dldojo.engine.reload import load_run

    run = load_run(args.run_dir, experiments=NB_EXPERIMENTS)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    print(repr(classify(run, texts, evidence=args.evidence)))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from dldojo.classic.actions import RULES_EXPERIMENTS, rules_for
    from dldojo.engine.reload import load_run

    run = load_run(args.run_dir, experiments=RULES_EXPERIMENTS)
    print(repr(rules_for(run, args.movie, n=args.n, max_antecedent=args.max_antecedent)))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="classify texts with a finished naive Bayes run (spam / sentiment)")
    p.add_argument("run_dir")
    p.add_argument("text", nargs="*", help="texts to classify (default: one per line on stdin)")
    p.add_argument("--evidence", type=int, default=3, help="words shown that weigh most for the answer (default 3)")
    p.set_defaults(func=cmd_classify)
    p = sub.add_parser("rules", help="association rules for a movie from a finished association-rules run")
    p.add_argument("run_dir")
    p.add_argument("--movie", required=True, help="MovieLens id or a piece of the title")
    p.add_argument("--n", type=int, default=10, help="how many rules (default 10)")
    p.add_argument("--max-antecedent", type=int, default=1,
                   help="at most this many movies on the 'if liked' side (default 1)")
    p.set_defaults(func=cmd_rules)
