"""Tree search for board games: AlphaZero's PUCT search, and the baselines it is measured against.

PUCT (Silver et al. 2017, "Mastering the game of Go without human knowledge"): at node s pick

    a* = argmax_a  Q(s,a) + c_puct · P(s,a) · √(Σ_b N(s,b)) / (1 + N(s,a))

where P comes from the policy head, Q = W/N is the mean value of the simulations through (s,a), and a
leaf is evaluated by the value head v(s) (no random rollout). At the root, P is mixed with Dirichlet
noise, P ← (1-ε) P + ε Dir(α), so self-play keeps exploring. After the search the move is drawn from
π(a) ∝ N(s,a)^(1/τ); τ → 0 means "most visited".

`search` runs many trees at once (one per game) and evaluates their leaves in a single network batch.

Baselines: `RandomPlayer`, `PureMCTS` (UCT with random rollouts, Kocsis & Szepesvári 2006) and
`MinimaxPlayer` (perfect play with a memo, for tic-tac-toe).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np

from dldojo.rl.games import Game

# boards [B, rows, cols] -> (priors [B, action_size], values [B]); values are for the player to move.
Evaluator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Node:
    """A position in the search tree; edge statistics are arrays over all moves."""

    __slots__ = ("board", "terminal", "legal", "P", "N", "W", "visits", "illegal_penalty", "children")

    def __init__(self, board: np.ndarray, terminal: float | None = None):
        self.board = board
        self.terminal = terminal  # game result for the player to move here, or None if the game goes on
        self.legal: np.ndarray | None = None  # set on expansion
        self.P = self.N = self.W = self.illegal_penalty = None
        self.visits = 0.0  # Σ_b N(s,b)
        self.children: list[Node | None] = []

    @property
    def expanded(self) -> bool:
        return self.legal is not None

    def expand(self, game: Game, priors: np.ndarray) -> None:
        self.legal = game.legal_mask(self.board)
        p = np.where(self.legal, priors, 0.0)
        total = p.sum()
        self.P = p / total if total > 0 else self.legal / self.legal.sum()
        self.N = np.zeros(game.action_size)
        self.W = np.zeros(game.action_size)
        self.illegal_penalty = np.where(self.legal, 0.0, -np.inf)
        self.children = [None] * game.action_size

    def select(self, c_puct: float) -> int:
        sqrt_total = math.sqrt(max(self.visits, 1.0))
        Q = self.W / np.maximum(self.N, 1.0)  # W = 0 where N = 0, so unvisited moves have Q = 0
        score = Q + c_puct * self.P * sqrt_total / (1.0 + self.N)
        return int((score + self.illegal_penalty).argmax())

    def child(self, game: Game, action: int) -> Node:
        node = self.children[action]
        if node is None:
            board, done, reward = game.step(self.board, action)
            node = Node(board, -reward if done else None)  # the mover's win is the next player's loss
            self.children[action] = node
        return node


def add_dirichlet_noise(root: Node, alpha: float, epsilon: float, rng: np.random.Generator) -> None:
    legal = np.flatnonzero(root.legal)
    noise = rng.dirichlet([alpha] * len(legal))
    root.P = root.P.copy()
    root.P[legal] = (1 - epsilon) * root.P[legal] + epsilon * noise


def search(game: Game, evaluate: Evaluator, roots: Sequence[Node], simulations: int, c_puct: float = 1.5,
           dirichlet_alpha: float = 0.0, dirichlet_epsilon: float = 0.0,
           rng: np.random.Generator | None = None) -> None:
    """Run `simulations` PUCT simulations in every root; all leaves of one round share one `evaluate` call."""
    fresh = [r for r in roots if not r.expanded and r.terminal is None]
    if fresh:
        priors, _ = evaluate(np.stack([r.board for r in fresh]))
        for root, p in zip(fresh, priors):
            root.expand(game, p)
    if dirichlet_epsilon > 0:
        for root in roots:
            if root.terminal is None:
                add_dirichlet_noise(root, dirichlet_alpha, dirichlet_epsilon, rng)
    live = [r for r in roots if r.terminal is None]
    for _ in range(simulations):
        paths, leaves = [], []
        for root in live:
            node, path = root, []
            while node.expanded and node.terminal is None:  # selection
                action = node.select(c_puct)
                path.append((node, action))
                node = node.child(game, action)
            paths.append(path)
            leaves.append(node)
        pending = [i for i, leaf in enumerate(leaves) if leaf.terminal is None]
        values = np.array([leaf.terminal if leaf.terminal is not None else 0.0 for leaf in leaves])
        if pending:  # expansion and evaluation: one network batch for every tree's leaf
            priors, leaf_values = evaluate(np.stack([leaves[i].board for i in pending]))
            for j, i in enumerate(pending):
                leaves[i].expand(game, priors[j])
                values[i] = leaf_values[j]
        for path, value in zip(paths, values):  # backup, flipping the sign at every ply
            for node, action in reversed(path):
                value = -value
                node.N[action] += 1
                node.W[action] += value
                node.visits += 1


def visit_policy(root: Node, temperature: float) -> np.ndarray:
    """π(a) ∝ N(s,a)^(1/τ); τ = 0 puts all mass on the most visited move (ties: lowest index)."""
    if temperature == 0:
        pi = np.zeros_like(root.N)
        pi[int(np.argmax(root.N))] = 1.0
        return pi
    counts = root.N ** (1.0 / temperature)
    return counts / counts.sum()


class Player:
    """Anything that picks moves for a batch of positions (all with the same player to move)."""

    name = "player"

    def choose(self, boards: list[np.ndarray], plies: list[int]) -> list[int]:
        raise NotImplementedError


class RandomPlayer(Player):
    name = "random"

    def __init__(self, game: Game, rng: np.random.Generator):
        self.game, self.rng = game, rng

    def choose(self, boards, plies):
        return [int(self.rng.choice(np.flatnonzero(self.game.legal_mask(b)))) for b in boards]


class AlphaZeroPlayer(Player):
    """Network-guided PUCT search; temperature 1 for the first `temperature_moves` plies, then greedy."""

    def __init__(self, game: Game, evaluate: Evaluator, simulations: int, c_puct: float = 1.5,
                 temperature_moves: int = 0, rng: np.random.Generator | None = None, name: str = "alphazero"):
        self.game, self.evaluate, self.simulations, self.c_puct = game, evaluate, simulations, c_puct
        self.temperature_moves, self.rng, self.name = temperature_moves, rng, name

    def choose(self, boards, plies):
        roots = [Node(b) for b in boards]
        search(self.game, self.evaluate, roots, self.simulations, self.c_puct)
        moves = []
        for root, ply in zip(roots, plies):
            pi = visit_policy(root, 1.0 if ply < self.temperature_moves else 0.0)
            moves.append(int(self.rng.choice(len(pi), p=pi)) if ply < self.temperature_moves else int(np.argmax(pi)))
        return moves


class PureMCTS(Player):
    """UCT with uniformly random rollouts: `rollouts` playouts per move, then the most visited move."""

    def __init__(self, game: Game, rollouts: int, rng: np.random.Generator, c_uct: float = math.sqrt(2)):
        self.game, self.rollouts, self.c_uct = game, rollouts, c_uct
        self.random = random.Random(int(rng.integers(2**63)))  # Python's RNG: fast scalar draws in rollouts
        self.name = f"mcts{rollouts}"

    def choose(self, boards, plies):
        return [self.best_move(b) for b in boards]

    def best_move(self, board: np.ndarray) -> int:
        game, rnd = self.game, self.random
        root = _UctNode(board, None, game)
        for _ in range(self.rollouts):
            node, path = root, [root]
            while not node.untried and node.children:  # selection: UCB1 on the children's win rates
                log_n = math.log(node.visits)
                node = max(node.children, key=lambda ch: ch.value / ch.visits
                           + self.c_uct * math.sqrt(log_n / ch.visits))
                path.append(node)
            if node.untried and node.terminal is None:  # expansion: one random untried move
                action = node.untried.pop(rnd.randrange(len(node.untried)))
                child_board, done, reward = game.step(node.board, action)
                child = _UctNode(child_board, action, game, -reward if done else None)
                node.children.append(child)
                node = child
                path.append(node)
            # simulation: result for the player to move at `node`
            result = node.terminal if node.terminal is not None else game.rollout(node.board, rnd)
            for n in reversed(path):  # backup: a node's value is for the player who moved into it
                n.visits += 1
                n.value -= result
                result = -result
        return max(root.children, key=lambda ch: ch.visits).action


class _UctNode:
    __slots__ = ("board", "action", "terminal", "untried", "children", "visits", "value")

    def __init__(self, board, action, game: Game, terminal: float | None = None):
        self.board, self.action, self.terminal = board, action, terminal
        self.untried = [] if terminal is not None else np.flatnonzero(game.legal_mask(board)).tolist()
        self.children: list[_UctNode] = []
        self.visits, self.value = 0, 0.0


class Minimax:
    """Perfect play for small games by negamax with a memo keyed by the board's bytes."""

    def __init__(self, game: Game):
        self.game = game

        @lru_cache(maxsize=None)
        def value(key: bytes) -> int:
            board = np.frombuffer(key, dtype=np.int8).reshape(game.rows, game.cols)
            return max(self._move_value(board, a) for a in np.flatnonzero(game.legal_mask(board)))

        self._value = value

    def _move_value(self, board: np.ndarray, action: int) -> int:
        nxt, done, reward = self.game.step(board, int(action))
        return int(reward) if done else -self._value(nxt.tobytes())

    def value(self, board: np.ndarray) -> int:
        """Game-theoretic value for the player to move: +1 win, 0 draw, -1 loss."""
        return self._value(np.ascontiguousarray(board, dtype=np.int8).tobytes())

    def optimal_moves(self, board: np.ndarray) -> list[int]:
        """Every move that keeps the game-theoretic value."""
        legal = np.flatnonzero(self.game.legal_mask(board))
        values = [self._move_value(board, a) for a in legal]
        best = max(values)
        return [int(a) for a, v in zip(legal, values) if v == best]


class MinimaxPlayer(Player):
    """Perfect player; picks uniformly among the optimal moves."""

    name = "minimax"

    def __init__(self, game: Game, rng: np.random.Generator):
        self.minimax, self.rng = Minimax(game), rng

    def choose(self, boards, plies):
        return [int(self.rng.choice(self.minimax.optimal_moves(b))) for b in boards]


def play_match(game: Game, a: Player, b: Player, games: int) -> dict[str, float]:
    """`games` games, half with `a` moving first; all games advance together so each player's moves for
    one ply are chosen in one batch. Returns a's wins / draws / losses, score (wins + draws/2) / games and
    each side's thinking time per move (a's moves are batched across games, so its time is amortised)."""
    boards = [game.initial() for _ in range(games)]
    a_first = [g % 2 == 0 for g in range(games)]
    result = [None] * games  # +1 a won, 0 draw, -1 a lost
    seconds, moves_made = {True: 0.0, False: 0.0}, {True: 0, False: 0}
    ply = 0
    while any(r is None for r in result):
        a_to_move = (ply % 2 == 0)
        for player, is_a in ((a, True), (b, False)):
            idx = [g for g in range(games) if result[g] is None and (a_first[g] == a_to_move) == is_a]
            if not idx:
                continue
            started = time.perf_counter()
            moves = player.choose([boards[g] for g in idx], [ply] * len(idx))
            seconds[is_a] += time.perf_counter() - started
            moves_made[is_a] += len(idx)
            for g, move in zip(idx, moves):
                boards[g], done, reward = game.step(boards[g], move)
                if done:
                    result[g] = reward if is_a else -reward
        ply += 1
    wins, draws = sum(r == 1 for r in result), sum(r == 0 for r in result)
    return {"wins": wins, "draws": draws, "losses": games - wins - draws, "games": games,
            "score": (wins + 0.5 * draws) / games,
            "seconds_per_move": round(seconds[True] / max(moves_made[True], 1), 4),
            "opponent_seconds_per_move": round(seconds[False] / max(moves_made[False], 1), 4)}


def exhaustive_vs_minimax(game: Game, choose: Callable[[np.ndarray], int], any_opponent: bool = False) -> dict:
    """Play a deterministic agent against every optimal minimax line (or every opponent move at all with
    `any_opponent`), as first and as second player. Returns counts of lines won / drawn / lost."""
    minimax = Minimax(game)
    memo: dict[bytes, int] = {}
    counts = {"lines": 0, "wins": 0, "draws": 0, "losses": 0, "losses_first": 0, "losses_second": 0}

    def agent_move(board: np.ndarray) -> int:
        key = board.tobytes()
        if key not in memo:
            memo[key] = choose(board)
        return memo[key]

    def walk(board: np.ndarray, agent_to_move: bool, agent_first: bool) -> None:
        if agent_to_move:
            options = [agent_move(board)]
        elif any_opponent:
            options = np.flatnonzero(game.legal_mask(board)).tolist()
        else:
            options = minimax.optimal_moves(board)
        for action in options:
            nxt, done, reward = game.step(board, action)
            if not done:
                walk(nxt, not agent_to_move, agent_first)
                continue
            counts["lines"] += 1
            if reward == 0:
                counts["draws"] += 1
            elif agent_to_move:
                counts["wins"] += 1
            else:
                counts["losses"] += 1
                counts["losses_first" if agent_first else "losses_second"] += 1

    walk(game.initial(), True, True)
    walk(game.initial(), False, False)
    return counts
