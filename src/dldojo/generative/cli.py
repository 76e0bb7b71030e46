"""`dldojo sample RUN_DIR [-n N] [--label L] [--out FILE.png | DIR] [--seed S]`: new samples from any finished run of
the generative family: a grid of images written as a PNG, or, from a model of sound, one WAV file per clip."""

from __future__ import annotations

import argparse


def cmd_sample(args: argparse.Namespace) -> int:
    from dldojo.engine.reload import load_run
    from dldojo.generative.actions import sample

    run = load_run(args.run_dir, family="generative")
    print(repr(sample(run, args.n, label=args.label, seed=args.seed, out=args.out)))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="draw new samples from a finished generative run: images (VAE, GAN) as a PNG "
                                      "grid, sound (WaveNet) as WAV files")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=None, help="how many images (default 64) or clips of sound (default 10)")
    p.add_argument("--label", type=int, default=None, help="class of the samples (conditional models only)")
    p.add_argument("--out", metavar="FILE.png|DIR", default=None,
                   help="where to write the grid (default RUN_DIR/samples/samples-n{N}-seed{S}.png) or, for sound, "
                        "the folder of the WAV files (default RUN_DIR/samples/audio-n{N}-seed{S}/)")
    p.add_argument("--seed", type=int, default=0, help="random stream of the samples (default 0)")
    p.set_defaults(func=cmd_sample)
