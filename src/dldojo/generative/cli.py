"""`dldojo sample RUN_DIR [-n 64] [--label L] [--out FILE.png] [--seed S]`: a grid of images from any finished run
of the generative family, written as a PNG."""

from __future__ import annotations

import argparse


def cmd_sample(args: argparse.Namespace) -> int:
    from dldojo.engine.reload import load_run
    from dldojo.generative.actions import sample

    run = load_run(args.run_dir, family="generative")
    print(repr(sample(run, args.n, label=args.label, seed=args.seed, out=args.out)))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw new images from a finished generative run (VAE, GAN) as a PNG grid")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="how many images (default 64)")
    p.add_argument("--label", type=int, default=None, help="class of the images (conditional models only)")
    p.add_argument("--out", metavar="FILE.png", default=None,
                   help="where to write the grid (default RUN_DIR/samples/samples-n{N}-seed{S}.png)")
    p.add_argument("--seed", type=int, default=0, help="random stream of the samples (default 0)")
    p.set_defaults(func=cmd_sample)
