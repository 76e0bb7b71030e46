"""`dldojo play RUN_DIR`: play tic-tac-toe or Connect Four in the terminal against a trained AlphaZero agent.

Moves are read line by line from stdin, so a game can also be scripted: `printf '5\\n1\\n' | dldojo play RUN`.
Illegal or unreadable input is re-asked; end of input (Ctrl-D) or `q` ends the game cleanly.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def load_agent(run_dir: Path, simulations: int | None = None):
    """(game, player, cfg) for a finished alphazero-* run: its best network with PUCT search at temperature 0."""
    from dldojo.engine.reload import load_run
    from dldojo.rl import alphazero

    check_simulations(simulations)
    return agent_of(load_run(run_dir, experiments=tuple(alphazero.GAME_OF)), simulations)


def check_simulations(simulations: int | None) -> None:
    from dldojo.engine.errors import DojoError

    if simulations is not None and (isinstance(simulations, bool) or not isinstance(simulations, int)
                                    or simulations < 1):
        raise DojoError(f"--simulations must be >= 1, got {simulations}")


def agent_of(run, simulations: int | None = None):
    """(game, player, cfg) for a loaded alphazero-* run (`engine.reload.LoadedRun`)."""
    from dldojo.rl import alphazero

    check_simulations(simulations)
    game = alphazero.GAME_OF[run.experiment.name]()
    cfg = dataclasses.replace(run.config, eval_simulations=simulations or run.config.eval_simulations)
    return game, alphazero.make_player(game, run.model, cfg), cfg


def play(game, agent, human_first: bool, stdin=None, stdout=None) -> str:
    """One game in the terminal; returns 'human', 'agent', 'draw' or 'quit'."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout

    def write(text: str = "", end: str = "\n") -> None:
        stdout.write(text + end)
        stdout.flush()

    board, human_to_move, ply = game.initial(), human_first, 0
    what = "a column 1-7" if game.name == "connect4" else f"a cell 1-{game.action_size}"
    write(f"You are {'X (first)' if human_first else 'O (second)'}. Type {what}, or q to quit.")
    while True:
        write("")
        write(game.render(board))
        if human_to_move:
            legal = game.legal_mask(board)
            while True:
                write("your move: ", end="")
                line = stdin.readline()
                if line and not stdin.isatty():  # scripted input: echo it so the transcript reads naturally
                    write(line.strip())
                if not line:  # end of input
                    write("\nno more input; game abandoned.")
                    return "quit"
                if line.strip().lower() in ("q", "quit", "exit"):
                    write("game abandoned.")
                    return "quit"
                action = game.parse_move(line)
                if action is None:
                    write(f"{line.strip()!r} is not a move; type {what}.")
                elif not legal[action]:
                    write(f"{game.move_name(action)} is not a legal move here (occupied or full); try again.")
                else:
                    break
        else:
            action = agent.choose([board], [ply])[0]
            write(f"agent plays {game.move_name(action)}")
        board, done, reward = game.step(board, action)
        ply += 1
        if done:
            write("")
            write(game.render(board))
            if reward == 0:
                write("draw.")
                return "draw"
            winner = "human" if human_to_move else "agent"
            write("you win!" if winner == "human" else "the agent wins.")
            return winner
        human_to_move = not human_to_move


def cmd_play(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    game, agent, cfg = load_agent(Path(args.run_dir), args.simulations)
    print(f"alphazero-{game.name}: agent searches {cfg.eval_simulations} simulations per move.")
    play(game, agent, human_first=not args.second)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play", help="play against a trained AlphaZero agent in the terminal",
                       description="Play against the best network of a finished alphazero-tictactoe or "
                                   "alphazero-connect4 run. The board is redrawn after every move; moves are "
                                   "read from stdin (cells 1-9 for tic-tac-toe, numbered left to right, top to "
                                   "bottom; columns 1-7 for Connect Four). Illegal input is re-asked; q or "
                                   "end of input stops.")
    p.add_argument("run_dir", help="a finished run directory of an alphazero-* experiment")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--first", action="store_true", help="you move first, as X (default)")
    side.add_argument("--second", action="store_true", help="the agent moves first; you play O")
    p.add_argument("--simulations", type=int, help="PUCT simulations per agent move (default: the run's "
                                                   "eval_simulations)")
    p.set_defaults(func=cmd_play)
