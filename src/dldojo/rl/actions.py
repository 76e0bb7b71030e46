"""What a finished reinforcement-learning run can do from Python (declared in this family's `FAMILY.actions`):

- `r.play(moves=[5, 1, 3])`: a game against an AlphaZero agent (`dldojo play`), moves scripted or typed;
- `r.episode(seed=0)`: one greedy CartPole episode of a Q-table / DQN / policy-gradient agent, drawn as an
  animation in Jupyter;
- `r.evaluate(episodes=10, seed=0)`: the returns of greedy episodes (episode i seeded with seed + i).
"""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from dldojo.engine.display import image_html
from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun
from dldojo.rl import common


def _is_game(run: LoadedRun) -> bool:
    from dldojo.rl import alphazero

    return run.experiment.name in alphazero.GAME_OF


def greedy_policy(run: LoadedRun) -> common.Act:
    """The trained agent acting greedily: the argmax of its Q-table, Q-network or policy logits."""
    from dldojo.rl import dqn, policy_gradient, q_table

    if _is_game(run):
        raise DojoError(f"{run.experiment.name} plays a board game, not CartPole: use r.play(moves=[...]).")
    model = run.model
    if isinstance(model, q_table.QTable):
        Q, edges = model.Q.numpy(), q_table.bin_edges(run.config.clip, run.config.num_bins)
        return lambda batch: Q[q_table.digitize(batch, edges)].argmax(1)
    if isinstance(model, dqn.QNetwork):
        return dqn.greedy_policy(model)
    if isinstance(model, policy_gradient.ActorCritic):
        return policy_gradient.greedy_policy(model)
    raise DojoError(f"{run.experiment.name}'s model ({type(model).__name__}) has no greedy policy here.")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise DojoError(f"seed must be an integer in [0, 2**31), got {seed!r}.")


@dataclasses.dataclass
class Episode:
    """One greedy episode: its return, length and the CartPole states visited (x, ẋ, θ, θ̇ per step)."""

    env_id: str
    episode_return: float
    states: list[np.ndarray]

    @property
    def length(self) -> int:
        return len(self.states) - 1

    @cached_property
    def gif(self) -> bytes:
        """The episode as an animated GIF (every 4th step), drawn without pyplot (no global state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from PIL import Image

        fig = Figure(figsize=(4, 1.6), dpi=80)
        canvas, ax = FigureCanvasAgg(fig), fig.add_subplot()
        steps = list(range(0, len(self.states), 4)) + ([self.length] if self.length % 4 else [])
        frames = []
        for t in steps:
            common.draw_cartpole(ax, self.states[t], t)
            canvas.draw()
            frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
        return buffer.getvalue()

    def __repr__(self) -> str:
        return f"<Episode {self.env_id}: return {self.episode_return:g} in {self.length} steps>"

    def _repr_html_(self) -> str:
        return (f"<p>{self.env_id}: return {self.episode_return:g} in {self.length} steps</p>"
                + image_html(self.gif, alt="episode", mime="image/gif"))


def episode(run: LoadedRun, seed: int = 0, max_steps: int = 500) -> Episode:
    """One greedy episode of the trained CartPole agent from `reset(seed=seed)`; renders as an animation."""
    _check_seed(seed)
    states, episode_return = common.rollout_states(greedy_policy(run), run.config.env_id, seed=seed,
                                                   max_steps=max_steps)
    return Episode(run.config.env_id, float(episode_return), states)


def evaluate(run: LoadedRun, episodes: int = 10, seed: int = 0) -> np.ndarray:
    """Returns of `episodes` greedy episodes of the trained CartPole agent, episode i seeded with seed + i."""
    _check_seed(seed)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 1 <= episodes <= 10_000:
        raise DojoError(f"episodes must be an integer in 1..10000, got {episodes!r}.")
    return common.evaluate(greedy_policy(run), run.config.env_id, episodes, seed)


class _Moves:
    """Scripted moves as the line-by-line input `rl.cli.play` reads (echoed into the transcript)."""

    def __init__(self, moves: Sequence[int | str]):
        self.lines = [f"{m}\n" for m in moves]

    def readline(self) -> str:
        return self.lines.pop(0) if self.lines else ""

    def isatty(self) -> bool:
        return False


class _Typed:
    """Moves typed by the user (`input()`: a text box in Jupyter)."""

    def readline(self) -> str:
        try:
            return input() + "\n"
        except EOFError:
            return ""

    def isatty(self) -> bool:
        return True


def play(run: LoadedRun, moves: Sequence[int | str] | str | None = None, first: bool = True,
         simulations: int | None = None) -> str:
    """A game against the trained AlphaZero agent, printed move by move: `moves` are your moves as typed in
    `dldojo play` (tic-tac-toe cells 1-9, Connect Four columns 1-7; a list or a space-separated string), or
    None to type them (q quits); `first=False` lets the agent open; `simulations` per agent move (default
    the run's eval_simulations). Returns 'human', 'agent', 'draw' or 'quit' (moves ran out)."""
    from dldojo.rl.cli import agent_of, play as play_game

    if not _is_game(run):
        raise DojoError(f"{run.experiment.name} is a CartPole agent, not a board-game player: use r.episode() "
                        f"or r.evaluate().")
    game, agent, _ = agent_of(run, simulations)
    stdin = _Typed() if moves is None else _Moves(moves.split() if isinstance(moves, str) else list(moves))
    return play_game(game, agent, human_first=bool(first), stdin=stdin, stdout=sys.stdout)
