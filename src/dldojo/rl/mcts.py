"""Tree search for board games: AlphaZero's PUCT search, and the baselines it is measured against.

PUCT (Silver et al. 2017, "Mastering the game of Go without human knowledge"): at node s pick

    a* = argmax_a  Q(s,a) + c_puct · P(s,a) · √(Σ_b N(s,b)) / (1 + N(s,a))

where P comes from the policy head, Q = W/N is the mean value of the simulations through (s,a), and a
leaf is evaluated by the value head v(s) (no random rollout). At the root, P is mixed with Dirichlet
noise, P ← (1-ε) P + ε Dir(α), so self-play keeps exploring. After the search the move is drawn from
π(a) ∝ N(s,a)^(1/τ); τ → 0 means "most visited".

Two implementations of the same search. `Node` / `search` is the readable one: one Python object per
position, edge statistics as small arrays. `SearchTrees` / `batched_search` is the one the experiments
use: B trees stored as arrays with one row per tree (the layout of DeepMind's mctx, Danihelka et al.
2022), so one simulation in all B trees is a few NumPy operations and one network batch, with no Python
loop over trees or nodes. Given the same evaluator both give the same visit counts (tested). Its trees
can be carried from one move to the next (`SearchTrees.subtrees`, AlphaGo Zero's tree reuse), and the
value of a finished game is exact: a terminal node is scored by the game result for its player to move,
never by the network.

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


class SearchTrees:
    """B PUCT search trees as arrays: node i of tree b holds boards[b, i] and, for every move a, the prior
    P[b, i, a], visit count N[b, i, a], total value W[b, i, a] (for the player to move at node i) and the
    index children[b, i, a] of the node it leads to (-1 while that node is not in the tree), parent[b, i]
    its parent (-1 for the root). Node 0 is the root; each simulation adds at most one node, so
    `capacity` = simulations + 1 always suffices. Nodes are numbered in creation order, so a parent's index
    is always below its children's."""

    def __init__(self, game: Game, boards: np.ndarray, capacity: int):
        trees, moves = len(boards), game.action_size
        self.game = game
        self.boards = np.zeros((trees, capacity, game.rows, game.cols), dtype=np.int8)
        self.boards[:, 0] = boards
        self.children = np.full((trees, capacity, moves), -1, dtype=np.int64)
        self.parent = np.full((trees, capacity), -1, dtype=np.int64)
        self.P = np.zeros((trees, capacity, moves))
        self.N = np.zeros((trees, capacity, moves))
        self.W = np.zeros((trees, capacity, moves))
        self.legal = np.zeros((trees, capacity, moves), dtype=bool)
        self.value = np.zeros((trees, capacity))  # the network's v at each expanded node
        self.terminal = np.zeros((trees, capacity), dtype=bool)
        self.terminal_value = np.zeros((trees, capacity))  # game result for the player to move there
        self.size = np.ones(trees, dtype=np.int64)

    def expand(self, b: np.ndarray, i: np.ndarray, priors: np.ndarray, values: np.ndarray) -> None:
        """Store the network's (p, v) at nodes (b, i); p is renormalised over the legal moves."""
        legal = self.game.legal_masks(self.boards[b, i])
        p = np.where(legal, priors, 0.0)
        total = p.sum(axis=1, keepdims=True)
        uniform = legal / legal.sum(axis=1, keepdims=True)
        self.legal[b, i], self.value[b, i] = legal, values
        self.P[b, i] = np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)

    def select_action(self, b: np.ndarray, i: np.ndarray, c_puct: float) -> np.ndarray:
        """argmax_a Q + c_puct · P · √(Σ_b N) / (1 + N) at nodes (b, i), over legal moves (Q = 0 if N = 0)."""
        N, W = self.N[b, i], self.W[b, i]
        sqrt_total = np.sqrt(np.maximum(N.sum(axis=1), 1.0))[:, None]
        score = W / np.maximum(N, 1.0) + c_puct * self.P[b, i] * sqrt_total / (1.0 + N)
        return np.where(self.legal[b, i], score, -np.inf).argmax(axis=1)

    def simulate(self, b: np.ndarray, evaluate: Evaluator, c_puct: float) -> None:
        """One simulation in each tree of `b` (distinct trees): selection down to a new edge or a terminal
        node, expansion and evaluation of the new leaves in one network batch, backup along each path."""
        depth_limit = self.game.rows * self.game.cols + 1  # no path is longer than a game
        path_nodes = np.zeros((len(b), depth_limit), dtype=np.int64)
        path_moves = np.zeros((len(b), depth_limit), dtype=np.int64)
        depth = np.zeros(len(b), dtype=np.int64)
        node = np.zeros(len(b), dtype=np.int64)
        going = np.arange(len(b))
        while going.size:  # selection, one ply for all trees that are still descending
            tree, at = b[going], node[going]
            move = self.select_action(tree, at, c_puct)
            path_nodes[going, depth[going]], path_moves[going, depth[going]] = at, move
            depth[going] += 1
            child = self.children[tree, at, move]
            deeper = child >= 0
            deeper[deeper] = ~self.terminal[tree[deeper], child[deeper]]
            node[going[deeper]] = child[deeper]
            going = going[deeper]
        rows = np.arange(len(b))
        parent, move = path_nodes[rows, depth - 1], path_moves[rows, depth - 1]
        leaf = self.children[b, parent, move]
        new = leaf < 0
        if new.any():  # expansion: the new positions enter the tree
            tree = b[new]
            index = self.size[tree]
            self.size[tree] += 1
            boards, done, reward = self.game.step_batch(self.boards[tree, parent[new]], move[new])
            self.boards[tree, index], self.terminal[tree, index] = boards, done
            self.terminal_value[tree, index] = -reward  # the mover's win is the next player's loss
            self.children[tree, parent[new], move[new]] = index
            self.parent[tree, index] = parent[new]
            leaf[new] = index
        value = self.terminal_value[b, leaf].copy()
        fresh = new & ~self.terminal[b, leaf]
        if fresh.any():  # evaluation: one network batch for every tree's new leaf
            priors, values = evaluate(self.boards[b[fresh], leaf[fresh]])
            self.expand(b[fresh], leaf[fresh], priors, values)
            value[fresh] = values
        # backup: edge d of a path belongs to the player to move at its node, who sees the leaf's value
        # with sign (-1)^(depth - d)
        r, d = np.nonzero(np.arange(depth_limit)[None, :] < depth[:, None])
        sign = np.where((depth[r] - d) % 2 == 0, 1.0, -1.0)
        tree, at, move = b[r], path_nodes[r, d], path_moves[r, d]
        self.N[tree, at, move] += 1.0  # (tree, node, move) triples are distinct: plain fancy-index updates
        self.W[tree, at, move] += sign * value[r]

    def root_value(self) -> np.ndarray:
        """Mean value of every root for its player to move, (v + Σ_a W) / (1 + Σ_a N)."""
        return (self.value[:, 0] + self.W[:, 0].sum(axis=1)) / (1.0 + self.N[:, 0].sum(axis=1))

    def subtrees(self, rows: np.ndarray, moves: np.ndarray, boards: np.ndarray, extra: int) -> SearchTrees:
        """Tree reuse (AlphaGo Zero, Methods: "the child node corresponding to the played action becomes the
        new root node; the subtree below this child is retained along with all its statistics, while the
        remainder of the tree is discarded"). Returns one tree per `rows[k]`, rooted at the child reached by
        `moves[k]`, with room for `extra` more simulations; where that child is not in the tree, is terminal
        or does not hold `boards[k]` (a new game in that slot), the tree is a fresh root with `boards[k]`."""
        rows, boards = np.asarray(rows), np.asarray(boards)
        old_root = self.children[rows, 0, moves]
        reuse = old_root >= 0
        reuse[reuse] = ~self.terminal[rows[reuse], old_root[reuse]]
        reuse[reuse] = (self.boards[rows[reuse], old_root[reuse]] == boards[reuse]).all(axis=(1, 2))
        # every node's ancestor among the root's children: climb parent links until the parent is the root
        capacity = self.parent.shape[1]
        top = np.broadcast_to(np.arange(capacity), (len(rows), capacity)).copy()
        while True:
            up = np.take_along_axis(self.parent[rows], top, axis=1)
            climb = up > 0
            if not climb.any():
                break
            top = np.where(climb, up, top)
        in_tree = np.arange(capacity)[None, :] < self.size[rows, None]
        keep = reuse[:, None] & in_tree & (top == np.where(reuse, old_root, -2)[:, None])
        new_index = np.cumsum(keep, axis=1) - 1  # the subtree's root has the lowest index: it becomes 0
        sizes = np.maximum(keep.sum(axis=1), 1)
        out = SearchTrees(self.game, boards, int(sizes.max()) + extra + 1)
        k, i = np.nonzero(keep)
        j, b = new_index[k, i], rows[k]
        out.boards[k, j], out.P[k, j], out.N[k, j], out.W[k, j] = self.boards[b, i], self.P[b, i], self.N[b, i], \
            self.W[b, i]
        out.legal[k, j], out.value[k, j] = self.legal[b, i], self.value[b, i]
        out.terminal[k, j], out.terminal_value[k, j] = self.terminal[b, i], self.terminal_value[b, i]
        old_children = self.children[b, i]
        out.children[k, j] = np.where(old_children >= 0,
                                      new_index[k[:, None], np.maximum(old_children, 0)], -1)
        out.parent[k, j] = np.where(i == old_root[k], -1, new_index[k, np.maximum(self.parent[b, i], 0)])
        out.size = sizes
        return out


def batched_search(game: Game, evaluate: Evaluator, boards: np.ndarray | None, simulations: int | np.ndarray,
                   c_puct: float = 1.5, dirichlet_alpha: float = 0.0, dirichlet_epsilon: float | np.ndarray = 0.0,
                   rng: np.random.Generator | None = None, trees: SearchTrees | None = None) -> SearchTrees:
    """PUCT search from every (non-terminal) board of `boards` [B, rows, cols], or, with `boards` = None,
    in the given `trees` (fresh or reused subtrees, see `SearchTrees.subtrees`); each tree is searched until its root has `simulations`
    visits. `simulations` and `dirichlet_epsilon` are one value for all trees or one per tree. From fresh
    roots this is the same as `search` on `Node`s; returns the trees (root visit counts: `trees.N[:, 0]`,
    root values: `trees.root_value()`)."""
    if (trees is None) == (boards is None):
        raise ValueError("give either boards or trees")
    if trees is None:
        budget = np.broadcast_to(np.asarray(simulations, dtype=np.int64), (len(boards),))
        trees = SearchTrees(game, np.asarray(boards), int(budget.max()) + 1)
    everyone = np.arange(len(trees.size))
    budget = np.broadcast_to(np.asarray(simulations, dtype=np.int64), everyone.shape)
    fresh = np.flatnonzero(~trees.legal[:, 0].any(axis=1))  # roots not expanded yet
    if fresh.size:
        priors, values = evaluate(trees.boards[fresh, 0])
        trees.expand(fresh, np.zeros(len(fresh), dtype=np.int64), priors, values)
    epsilon = np.broadcast_to(np.asarray(dirichlet_epsilon, dtype=np.float64), everyone.shape)
    for b in np.flatnonzero(epsilon > 0):  # root noise, P ← (1-ε) P + ε Dir(α), tree by tree (as `search`)
        legal = np.flatnonzero(trees.legal[b, 0])
        noise = rng.dirichlet([dirichlet_alpha] * len(legal))
        trees.P[b, 0, legal] = (1 - epsilon[b]) * trees.P[b, 0, legal] + epsilon[b] * noise
    remaining = budget - trees.N[:, 0].sum(axis=1).astype(np.int64)
    if np.any(trees.size + np.maximum(remaining, 0) > trees.parent.shape[1]):
        raise ValueError("the trees have no room for this many simulations")
    for simulation in range(int(remaining.max(initial=0))):
        trees.simulate(everyone[remaining > simulation], evaluate, c_puct)
    return trees


def visit_policy(counts: np.ndarray, temperature: float) -> np.ndarray:
    """π(a) ∝ N(s,a)^(1/τ) from the root's visit counts; τ = 0 puts all mass on the most visited move
    (ties: lowest index)."""
    if temperature == 0:
        pi = np.zeros_like(counts, dtype=np.float64)
        pi[int(np.argmax(counts))] = 1.0
        return pi
    powered = np.asarray(counts, dtype=np.float64) ** (1.0 / temperature)
    return powered / powered.sum()


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
    """Network-guided PUCT search (`batched_search`, one tree per board, no root noise); temperature 1 for
    the first `temperature_moves` plies, then the most visited move."""

    def __init__(self, game: Game, evaluate: Evaluator, simulations: int, c_puct: float = 1.5,
                 temperature_moves: int = 0, rng: np.random.Generator | None = None, name: str = "alphazero"):
        self.game, self.evaluate, self.simulations, self.c_puct = game, evaluate, simulations, c_puct
        self.temperature_moves, self.rng, self.name = temperature_moves, rng, name

    def choose(self, boards, plies):
        trees = batched_search(self.game, self.evaluate, np.stack(boards), self.simulations, self.c_puct)
        moves = []
        for counts, ply in zip(trees.N[:, 0], plies):
            if ply < self.temperature_moves:
                moves.append(int(self.rng.choice(len(counts), p=visit_policy(counts, 1.0))))
            else:
                moves.append(int(np.argmax(counts)))
        return moves


class PureMCTS(Player):
    """Pure Monte-Carlo tree search: UCT (Kocsis & Szepesvári 2006) with uniformly random rollouts, the
    textbook algorithm of Browne et al. 2012 (no network, no game knowledge). For each move a fresh tree
    gets `rollouts` iterations, each one

    1. selection: from the root, while the node is fully expanded, go to the child maximising UCB1,
       X̄_j + c_uct · √(ln n / n_j), X̄_j = the child's mean result (+1 win, 0 draw, −1 loss) for the
       player who moved into it, n and n_j the visit counts of the node and the child;
    2. expansion: add one untried move of that node, chosen uniformly at random;
    3. simulation: one complete game of uniformly random moves from the new node to the end (no depth
       cut-off, no heuristics);
    4. backup: the result goes up the path, with its sign flipped at every ply.

    A terminal node is scored by its exact result. The move played is the most visited root child.
    c_uct = 1 on results in [−1, 1] (= 0.5 on results in [0, 1]): in 40-game Connect Four matches of
    1,000 rollouts per move it beat c_uct = √2 (the setting used before) and that beat 2√2 (= the textbook
    √2 on [0, 1]), so this is the strongest of the three (results/alphazero-notes.md)."""

    def __init__(self, game: Game, rollouts: int, rng: np.random.Generator, c_uct: float = 1.0):
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
    one ply are chosen in one batch. Returns a's wins / draws / losses (in total and as first / second
    player), score (wins + draws/2) / games and each side's thinking time per move (a's moves are batched
    across games, so its time is amortised)."""
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
    first = [r for r, f in zip(result, a_first) if f]
    second = [r for r, f in zip(result, a_first) if not f]
    return {"wins": wins, "draws": draws, "losses": games - wins - draws, "games": games,
            "score": (wins + 0.5 * draws) / games,
            "wins_first": sum(r == 1 for r in first), "losses_first": sum(r == -1 for r in first),
            "games_first": len(first), "wins_second": sum(r == 1 for r in second),
            "losses_second": sum(r == -1 for r in second), "games_second": len(second),
            "seconds_per_move": round(seconds[True] / max(moves_made[True], 1), 4),
            "opponent_seconds_per_move": round(seconds[False] / max(moves_made[False], 1), 4)}


def exhaustive_vs_minimax(game: Game, choose: Callable[[list[np.ndarray]], list[int]],
                          any_opponent: bool = False) -> dict:
    """Play a deterministic agent against every optimal minimax line (or every opponent move at all with
    `any_opponent`), as first and as second player. `choose` maps a list of boards to the agent's moves;
    the walk goes ply by ply, so all positions the agent meets at one ply are decided in one call, and a
    position reached by several lines is decided once and counted with its number of lines. Returns counts
    of lines won / drawn / lost."""
    minimax = Minimax(game)
    counts = {"lines": 0, "wins": 0, "draws": 0, "losses": 0, "losses_first": 0, "losses_second": 0}
    for agent_first in (True, False):
        frontier = {game.initial().tobytes(): (game.initial(), 1)}  # position -> (board, lines reaching it)
        agent_to_move = agent_first
        while frontier:
            positions = list(frontier.values())
            if agent_to_move:
                options = [[move] for move in choose([board for board, _ in positions])]
            elif any_opponent:
                options = [np.flatnonzero(game.legal_mask(board)).tolist() for board, _ in positions]
            else:
                options = [minimax.optimal_moves(board) for board, _ in positions]
            frontier = {}
            for (board, lines), moves in zip(positions, options):
                for action in moves:
                    nxt, done, reward = game.step(board, action)
                    if not done:
                        key = nxt.tobytes()
                        frontier[key] = (nxt, frontier[key][1] + lines if key in frontier else lines)
                        continue
                    counts["lines"] += lines
                    if reward == 0:
                        counts["draws"] += lines
                    elif agent_to_move:
                        counts["wins"] += lines
                    else:
                        counts["losses"] += lines
                        counts["losses_first" if agent_first else "losses_second"] += lines
            agent_to_move = not agent_to_move
    return counts
