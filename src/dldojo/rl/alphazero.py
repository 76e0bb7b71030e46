"""`alphazero-tictactoe`, `alphazero-connect4`: AlphaGo Zero's self-play reinforcement learning.

Curriculum: AlphaGo Zero (Silver et al. 2017, "Mastering the game of Go without human knowledge",
Nature 550), in its game-general form AlphaZero (Silver et al. 2018, Science 362). One network
f_θ(s) = (p, v) with a residual trunk and two heads; a PUCT tree search guided by it (see `mcts.py`)
turns p into a stronger policy π (visit counts) and plays games against itself. Each searched position
s_t of a game with result z (±1/0, from the view of the player to move at s_t) is a training example:

    l = (ẑ − v)² − πᵀ log p + c ‖θ‖²,        ẑ = (1 − w) z + w q

with q the search's root value (w = `q_weight`; w = 0 is the paper, w = 0.5 averages the game result
with the search's own estimate, which is less noisy early in training).

Generations: self-play with the best network → replay buffer → the candidate network trains on
samples from it → the candidate plays the best network (`gate_games` games); it replaces the best only
when it scores ≥ `gate_threshold` (AlphaGo Zero: 55 % of 400 games). Every accepted network is kept
as `generations/best-genNNN.safetensors`; the run's table has one row per generation with its scores
against fixed baselines (random, pure MCTS with random rollouts, and for tic-tac-toe perfect minimax)
and an Elo rating: one Bradley-Terry fit (`elo.py`) over every gating and baseline match of the run,
anchored at random play = 0. Gating matches only count for accepted networks, which inflates the chain
of generation-to-generation gains a little (a candidate is kept when it was lucky); the baseline
matches tie the chain back down.

Differences from the paper, for a 2-core CPU: a few residual blocks of 32-64 channels instead of 19-39
of 256, tens to hundreds of simulations per move instead of 1,600, Adam instead of SGD with momentum,
bfloat16 for the network in Connect Four (inference on a bf16 copy, training under autocast), and the
gating match uses temperature 1 for its first plies (otherwise two deterministic players would repeat
one game). From KataGo (Wu 2019, "Accelerating self-play learning in Go"): playout cap randomisation
(a fraction `full_search_prob` of the moves is searched with `simulations` and becomes training data,
the rest are played quickly with `fast_simulations` and only move the game on, so more games — more
value targets — fit in the same time). As in AlphaGo Zero: symmetry augmentation (the left-right
mirror in Connect Four, all 8 symmetries in tic-tac-toe) and tree reuse (self-play keeps the subtree
below each move played for the next search). The agent may search more at evaluation time
(`eval_simulations`) than in self-play.

Tic-tac-toe: almost every game between two decent players is a draw, so a better candidate can never
reach 55 %; its presets gate at 50 % (the candidate must not lose the match). Its self-play samples
every move from π (τ = 1 throughout): with τ = 1 for only the first 3 plies the network never sees the
positions after rare but legal replies, and its value there is a guess (it rated a lost position
0.0); those were the lines it lost to minimax (1-3 lost lines on seed 0 at 25 to 400 simulations per
move, where τ = 1 throughout loses none).

Targets (the dldojo issue): the tic-tac-toe agent never loses to perfect minimax as first or second
player, checked exhaustively over every optimal minimax reply; the Connect Four agent, after ≤ 30
minutes of self-play on 2 cores, wins ≥ 90 % of ≥ 50 games against pure MCTS with 1,000 rollouts.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import ClassVar
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.fx.experimental.optimization import fuse

from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, Reference, register
from dldojo.engine.run import RunContext
from dldojo.rl.elo import fit_elo
from dldojo.rl.games import ConnectFour, Game, TicTacToe
from dldojo.rl.mcts import (AlphaZeroPlayer, PureMCTS, RandomPlayer, SearchTrees, batched_search,
                            exhaustive_vs_minimax, play_match)


@dataclasses.dataclass
class AlphaZeroConfig:
    RANGES: ClassVar[dict] = {
        "generations": (0, 10**5), "games_per_generation": (1, 10**6), "parallel_games": (1, 4096),
        "simulations": (1, 10**5), "fast_simulations": (0, 10**5), "full_search_prob": (0, 1),
        "eval_simulations": (1, 10**5), "match_simulations": (0, 10**5), "c_puct": (0, 100),
        "dirichlet_alpha": (0, 100), "dirichlet_epsilon": (0, 1), "temperature_moves": (0, 100), "q_weight": (0, 1),
        "channels": (1, 1024), "blocks": (0, 64), "value_hidden": (1, 8192), "replay_size": (1, 10**7),
        "train_steps": (0, 10**6), "batch_size": (1, 65536), "weight_decay": (0, 10),
        "gate_games": (0, 10**5), "gate_threshold": (0, 1), "gate_temperature_moves": (0, 100),
        "eval_games": (0, 10**5), "eval_every": (0, 10**5), "eval_rollouts": (1, 10**6), "final_games": (0, 10**5),
        "final_rollouts": (1, 10**6), "max_minutes": (0, 10**5)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    generations: int = 20
    """Number of generations (self-play → training → gating → evaluation)."""
    games_per_generation: int = 64
    """Self-play games played by the best network in each generation."""
    parallel_games: int = 64
    """Self-play games advanced together (a finished game's slot starts a new one); one network batch."""
    simulations: int = 50
    """PUCT simulations per move in a full self-play search (its positions become training data)."""
    fast_simulations: int = 0
    """Simulations of the quick searches of playout cap randomisation (0 = every search is full)."""
    full_search_prob: float = 1.0
    """Probability that a self-play move gets a full search (KataGo's playout cap randomisation)."""
    eval_simulations: int = 50
    """PUCT simulations per move of the final agent: final match, minimax check and `dldojo play`."""
    match_simulations: int = 0
    """PUCT simulations per move in gating and per-generation baseline matches (0 = eval_simulations)."""
    c_puct: float = 1.5
    """Exploration constant c_puct in the PUCT rule."""
    dirichlet_alpha: float = 1.0
    """Dirichlet α of the root noise (AlphaZero scales it as ~10 / typical number of legal moves)."""
    dirichlet_epsilon: float = 0.25
    """Weight ε of the root noise in full searches: P ← (1-ε) P + ε Dir(α); quick searches have none."""
    temperature_moves: int = 8
    """Self-play plies sampled from π with τ = 1; later plies take the most visited move (τ → 0)."""
    q_weight: float = 0.0
    """Weight w of the root value q in the value target ẑ = (1 − w) z + w q (0 = the game result only)."""
    channels: int = 32
    """Channels of the residual trunk."""
    blocks: int = 3
    """Residual blocks in the trunk."""
    value_hidden: int = 64
    """Hidden units of the value head's fully connected layer."""
    bf16: bool = False
    """Run the network under bfloat16 autocast (self-play, matches and training; weights stay fp32)."""
    replay_size: int = 40000
    """Positions kept in the replay buffer (after symmetry augmentation); oldest are dropped."""
    train_steps: int = 200
    """Minibatch updates of the candidate network per generation."""
    batch_size: int = 256
    """Positions per minibatch."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 1e-4
    """L2 coefficient c on the weights."""
    gate_games: int = 20
    """Games of the candidate against the best network per generation (half with each colour)."""
    gate_threshold: float = 0.55
    """The candidate becomes the best network when its score (wins + draws/2) / games reaches this."""
    gate_temperature_moves: int = 2
    """Plies at the start of gating games drawn with τ = 1 so the games differ."""
    eval_games: int = 10
    """Games per generation of the best network against each baseline (random, pure MCTS)."""
    eval_every: int = 1
    """Evaluate the best network against the baselines every N generations (0 = only the final match)."""
    eval_rollouts: int = 200
    """Rollouts per move of the pure-MCTS baseline in the per-generation evaluation."""
    final_games: int = 50
    """Games of the final match against pure MCTS (half with each colour)."""
    final_rollouts: int = 1000
    """Rollouts per move of the pure-MCTS opponent in the final match."""
    max_minutes: float = 0.0
    """Self-play + training + gating budget: no generation starts that would end past it (0 = none)."""

    def validate(self) -> None:
        if min(self.generations, self.games_per_generation, self.parallel_games, self.simulations,
               self.eval_simulations, self.channels, self.batch_size) < 1:
            raise DojoError("generations, games, simulations, channels and batch_size must be >= 1")
        if self.final_games < 2 or self.eval_games < 2 or self.gate_games < 2:
            raise DojoError("final_games, eval_games and gate_games must be >= 2 (one game with each colour)")
        if not 0 <= self.dirichlet_epsilon <= 1:
            raise DojoError(f"dirichlet_epsilon must be in [0, 1], got {self.dirichlet_epsilon}")
        if not 0 < self.full_search_prob <= 1 or (self.full_search_prob < 1 and self.fast_simulations < 1):
            raise DojoError("full_search_prob must be in (0, 1], and below 1 needs fast_simulations >= 1")
        if not 0 <= self.q_weight <= 1:
            raise DojoError(f"q_weight must be in [0, 1], got {self.q_weight}")


# ----- the network: residual trunk, policy head, value head (AlphaGo Zero, Methods) -----

class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(h)))


class AlphaZeroNet(nn.Module):
    """f_θ(s) = (log p, v): 3 input planes → conv/BN/ReLU → residual blocks → policy and value heads."""

    def __init__(self, rows: int, cols: int, action_size: int, channels: int = 32, blocks: int = 3,
                 value_hidden: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.trunk = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.policy_head = nn.Sequential(nn.Conv2d(channels, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
                                         nn.Flatten(), nn.Linear(2 * rows * cols, action_size))
        self.value_head = nn.Sequential(nn.Conv2d(channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU(),
                                        nn.Flatten(), nn.Linear(rows * cols, value_hidden), nn.ReLU(),
                                        nn.Linear(value_hidden, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(self.stem(x))
        return F.log_softmax(self.policy_head(h), dim=1), self.value_head(h).squeeze(1)


def build_net(game: Game, cfg: AlphaZeroConfig) -> AlphaZeroNet:
    return AlphaZeroNet(game.rows, game.cols, game.action_size, cfg.channels, cfg.blocks, cfg.value_hidden)


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def padded_batch_size(n: int) -> int:
    """The batch size `n` is padded to: a power of two up to 64, then a multiple of 64 (of 256 above 512).
    The search's batches shrink one tree at a time as trees finish, and oneDNN builds (and caches, up to
    1,024 entries) one kernel per layer and input shape: hundreds of distinct sizes thrash that cache.
    Measured on the 2-core AMD EPYC (AVX-512 BF16), 32×3 bf16 network: 40k positions/s at one fixed size,
    24k over 150 sizes seen once, 7k when the same 150 sizes come round again; padded, 37-38k. Self-play
    of one full-preset generation went from 79 s to 40 s (results/alphazero-notes.md)."""
    if n <= 64:
        return 1 << max(n - 1, 0).bit_length()
    step = 64 if n <= 512 else 256
    return -(-n // step) * step


def make_evaluator(net: AlphaZeroNet, game: Game, bf16: bool = False):
    """boards -> (p, v) as NumPy arrays, from a frozen inference copy of `net`: BatchNorm folded into the
    convolutions (torch.fx's conv-BN fusion), channels-last memory layout, batches zero-padded to a few
    sizes (`padded_batch_size`) and, with `bf16`, bfloat16 weights and activations (≈ 2× the fp32
    throughput on the 2-core AMD EPYC for batches of 128-512; see results/alphazero-notes.md). Later updates
    of `net` do not reach the copy."""
    frozen = fuse(copy.deepcopy(net).eval()).to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if bf16 else torch.float32
    frozen = frozen.to(dtype)

    def evaluate(boards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        planes = game.encode(boards)
        n = len(planes)
        padded = np.zeros((padded_batch_size(n),) + planes.shape[1:], dtype=np.float32)
        padded[:n] = planes  # eval mode: every row is computed independently of the padding rows
        X = torch.from_numpy(padded).to(dtype).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            log_p, v = frozen(X)
        return log_p[:n].float().exp().numpy().astype(np.float64), v[:n].float().numpy().astype(np.float64)
    return evaluate


# ----- self-play and the replay buffer -----

def self_play(game: Game, evaluate, cfg: AlphaZeroConfig, rng: np.random.Generator, games: int):
    """Play `games` games of the network against itself, `parallel_games` at a time (all their searches
    in one batched search per ply; the subtree below each move played is kept for the next search).
    Returns the fully searched positions as (board, π, z, q) and the game lengths."""
    slots = min(cfg.parallel_games, games)
    boards = np.stack([game.initial()] * slots)
    plies = np.zeros(slots, dtype=np.int64)
    history: list[list[tuple[np.ndarray, np.ndarray, float, int]]] = [[] for _ in range(slots)]
    playing = np.ones(slots, dtype=bool)
    started, trees = slots, SearchTrees(game, boards, cfg.simulations + 1)
    examples, lengths = [], []
    while playing.any():
        live = np.flatnonzero(playing)
        # playout cap randomisation, one draw per ply for all the games advanced together: every simulation
        # of the ply is then one full network batch (a draw per game would leave the full searches' last
        # simulations a quarter of a batch each)
        full = np.full(len(live), rng.random() < cfg.full_search_prob)
        batched_search(game, evaluate, None, np.where(full, cfg.simulations, cfg.fast_simulations), cfg.c_puct,
                       cfg.dirichlet_alpha, np.where(full, cfg.dirichlet_epsilon, 0.0), rng, trees=trees)
        counts, q = trees.N[:, 0], trees.root_value()
        moves = counts.argmax(axis=1)  # τ → 0
        for j, g in enumerate(live):
            pi = counts[j] / counts[j].sum()  # the training target: visit counts at τ = 1
            if full[j]:
                history[g].append((boards[g].copy(), pi.astype(np.float32), float(q[j]), int(plies[g])))
            if plies[g] < cfg.temperature_moves:
                moves[j] = rng.choice(len(pi), p=pi)
        boards[live], done, reward = game.step_batch(boards[live], moves)
        plies[live] += 1
        for g, r in zip(live[done], reward[done]):
            last = plies[g] - 1  # the mover of the last ply gets `reward`, its opponent -reward
            examples += [(b, pi, r if (last - t) % 2 == 0 else -r, q_t) for b, pi, q_t, t in history[g]]
            lengths.append(int(plies[g]))
            if started < games:  # the slot starts a new game
                boards[g], plies[g], history[g] = game.initial(), 0, []
                started += 1
            else:
                playing[g] = False
        going_on = playing[live]  # next ply: the subtree below each move played (a fresh root for new games)
        if going_on.any():
            trees = trees.subtrees(np.flatnonzero(going_on), moves[going_on], boards[live[going_on]],
                                   cfg.simulations)
    return examples, lengths


class ReplayBuffer:
    """A ring buffer of (board, π, z, q), stored with every symmetry of each position."""

    def __init__(self, game: Game, capacity: int):
        self.game, self.capacity = game, capacity
        self.boards = np.zeros((capacity, game.rows, game.cols), dtype=np.int8)
        self.pis = np.zeros((capacity, game.action_size), dtype=np.float32)
        self.zs = np.zeros(capacity, dtype=np.float32)
        self.qs = np.zeros(capacity, dtype=np.float32)
        self.size = self.pos = 0

    def add(self, examples) -> None:
        for board, pi, z, q in examples:
            for b, p in self.game.symmetries(board, pi):
                self.boards[self.pos], self.pis[self.pos], self.zs[self.pos], self.qs[self.pos] = b, p, z, q
                self.pos = (self.pos + 1) % self.capacity
                self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, q_weight: float = 0.0):
        """A minibatch (input planes, π, ẑ = (1 − w) z + w q)."""
        idx = rng.integers(0, self.size, batch_size)
        target = (1 - q_weight) * self.zs[idx] + q_weight * self.qs[idx]
        return (torch.from_numpy(self.game.encode(self.boards[idx])), torch.from_numpy(self.pis[idx]),
                torch.from_numpy(target.astype(np.float32)))

    def state_dict(self) -> dict:
        return {"boards": torch.from_numpy(self.boards), "pis": torch.from_numpy(self.pis),
                "zs": torch.from_numpy(self.zs), "qs": torch.from_numpy(self.qs), "size": self.size,
                "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.boards, self.pis = state["boards"].numpy(), state["pis"].numpy()
        self.zs, self.qs = state["zs"].numpy(), state["qs"].numpy()
        self.size, self.pos = int(state["size"]), int(state["pos"])


def train_step(net: AlphaZeroNet, optimizer: torch.optim.Optimizer, X, pi, z, bf16: bool = False
               ) -> tuple[float, float]:
    """One update on l = (ẑ − v)² − πᵀ log p (+ c‖θ‖² as the optimizer's weight decay)."""
    net.train()
    with _autocast(bf16):
        log_p, v = net(X)
    value_loss = F.mse_loss(v.float(), z)
    policy_loss = -(pi * log_p.float()).sum(dim=1).mean()
    optimizer.zero_grad()
    (value_loss + policy_loss).backward()
    optimizer.step()
    return float(policy_loss.detach()), float(value_loss.detach())


# ----- the generation loop -----

def run(ctx: RunContext, cfg: AlphaZeroConfig, game: Game) -> dict[str, float]:
    best, candidate = build_net(game, cfg), build_net(game, cfg)
    candidate.load_state_dict(best.state_dict())
    untrained = copy.deepcopy(best)  # generation 0, for contrast in the final evaluation
    ctx.save_weights(best.state_dict(), name="generations/best-gen000")
    optimizer = torch.optim.Adam(candidate.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    s = SimpleNamespace(best=best, candidate=candidate, untrained=untrained, optimizer=optimizer,
                        replay=ReplayBuffer(game, cfg.replay_size), best_generation=0, train_seconds=0.0,
                        rows=[],  # one row per generation (the report's table)
                        matches=[])  # (player, opponent, player's points, games) for the Elo fit
    plays, samples, gating = ctx.rng("self-play"), ctx.rng("replay"), ctx.rng("gating")
    generation = ctx.restore(s)

    bar = ctx.progress(cfg.generations, desc="generations", initial=generation, unit="gen")
    last_duration = 0.0
    while generation < cfg.generations:
        if cfg.max_minutes and s.train_seconds + last_duration > 60 * cfg.max_minutes:
            break  # the next generation (as long as the last one) would end past the budget
        started = time.perf_counter()
        # 1. self-play with the best network
        examples, lengths = self_play(game, make_evaluator(best, game, cfg.bf16), cfg, plays, cfg.games_per_generation)
        s.replay.add(examples)
        self_play_seconds = time.perf_counter() - started
        # 2. train the candidate on the replay buffer
        losses = [train_step(candidate, optimizer, *s.replay.sample(cfg.batch_size, samples, cfg.q_weight), cfg.bf16)
                  for _ in range(cfg.train_steps)]
        policy_loss, value_loss = np.mean(losses, axis=0)
        ctx.check_finite(policy_loss + value_loss, generation + 1, hint="Try a lower lr (--set lr=3e-4).")
        # 3. gating: the candidate replaces the best network only if it wins the match
        simulations = cfg.match_simulations or cfg.eval_simulations
        gate = play_match(game, make_player(game, candidate, cfg, gating, cfg.gate_temperature_moves, "candidate",
                                            simulations),
                          make_player(game, best, cfg, gating, cfg.gate_temperature_moves, "best", simulations),
                          cfg.gate_games)
        generation += 1
        accepted = gate["score"] >= cfg.gate_threshold
        if accepted:
            s.matches.append((f"gen{generation:03d}", f"gen{s.best_generation:03d}",
                              gate["wins"] + 0.5 * gate["draws"], gate["games"]))
            best.load_state_dict(candidate.state_dict())
            s.best_generation = generation
            ctx.save_weights(best.state_dict(), name=f"generations/best-gen{generation:03d}")
        last_duration = time.perf_counter() - started
        s.train_seconds += last_duration
        # 4. evaluate the best network against fixed baselines
        row = {"generation": generation, "accepted": accepted, "best_generation": s.best_generation,
               "gate_score": gate["score"], "policy_loss": float(policy_loss), "value_loss": float(value_loss),
               "game_length": float(np.mean(lengths)), "positions": len(examples), "replay": s.replay.size,
               "self_play_seconds": self_play_seconds, "score_vs_random": None, "score_vs_mcts": None}
        if isinstance(game, TicTacToe):
            row["losses_vs_minimax"] = None
        if cfg.eval_every and (generation % cfg.eval_every == 0 or generation == cfg.generations):
            # its own random stream, so evaluating (or not) never changes the training trajectory
            rng = np.random.default_rng(ctx.seed_for(f"eval/generation/{generation}"))
            scores, results = evaluate_generation(game, best, cfg, rng)
            row.update(scores)
            s.matches += [(f"gen{s.best_generation:03d}", opponent, r["wins"] + 0.5 * r["draws"], r["games"])
                          for opponent, r in results.items()]
        row["train_minutes"] = s.train_seconds / 60
        s.rows.append(row)
        ctx.log(generation, **{k: float(v) for k, v in row.items()
                               if k not in ("generation", "train_minutes") and v is not None})
        bar.update(1)
        bar.set_postfix(loss=f"{policy_loss + value_loss:.3f}", gate=f"{gate['score']:.2f}",
                        best=s.best_generation)
        ctx.tick(generation, s)
    bar.close()

    ctx.save_weights(best.state_dict())
    metrics, final_results = final_evaluation(ctx, game, best, untrained, cfg,
                                              np.random.default_rng(ctx.seed_for("eval/final")))
    matches = s.matches + [(f"gen{s.best_generation:03d}", opponent, r["wins"] + 0.5 * r["draws"], r["games"])
                           for opponent, r in final_results.items()]
    elo = fit_elo(matches, anchor="random")
    for row in s.rows:
        row["elo"] = round(elo[f"gen{row['best_generation']:03d}"], 1) if f"gen{row['best_generation']:03d}" in elo \
            else None
    ctx.save_table("generations", s.rows, caption=(
        "One row per generation: gating score of the candidate against the best network (accepted when ≥ "
        f"{cfg.gate_threshold}), losses, and the best network's score (wins + draws/2) against random play and "
        f"pure MCTS with {cfg.eval_rollouts} rollouts ({cfg.eval_games} games each, both colours); elo: the "
        "best network's Bradley-Terry rating fitted over all matches of the run (random play = 0)."))
    ctx.save_table("elo", [{"player": p, "elo": round(r, 1), "games": sum(g for a, b, _, g in matches if p in (a, b))}
                           for p, r in sorted(elo.items(), key=lambda kv: -kv[1])], caption=(
        "Elo ratings (Bradley-Terry maximum likelihood, one virtual draw per match as prior, random = 0) from "
        "every accepted gating match (genNNN: the network accepted in generation NNN) and every baseline "
        "match (mctsN: pure MCTS with N random rollouts per move)."))
    _figures(ctx, s.rows, elo)
    ctx.add_timings(train_seconds=s.train_seconds)
    ctx.add_facts(eval_simulations=cfg.eval_simulations, final_rollouts=cfg.final_rollouts, final_games=cfg.final_games)
    metrics.update(train_generations=float(generation), train_best_generation=float(s.best_generation),
                   eval_elo_final=elo[f"gen{s.best_generation:03d}"])
    return metrics


def make_player(game: Game, net: AlphaZeroNet, cfg: AlphaZeroConfig, rng: np.random.Generator | None = None,
                temperature_moves: int = 0, name: str = "alphazero", simulations: int | None = None
                ) -> AlphaZeroPlayer:
    """The agent: `net` guiding a PUCT search of `simulations` (default: `eval_simulations`) per move; with
    `temperature_moves` = 0 it plays the most visited move (deterministic when `rng` is None)."""
    return AlphaZeroPlayer(game, make_evaluator(net, game, cfg.bf16), simulations or cfg.eval_simulations,
                           cfg.c_puct, temperature_moves, rng, name)


def build_model(cfg: AlphaZeroConfig, run) -> AlphaZeroNet:
    """The trained network's shape for a reloaded run (`dldojo play`): the game comes from the experiment."""
    return build_net(GAME_OF[run.experiment.name](), cfg)


def evaluate_generation(game: Game, net: AlphaZeroNet, cfg: AlphaZeroConfig, rng):
    """Scores of the best network (`match_simulations` per move) against random play and pure MCTS (and
    lost minimax lines of the final agent's search for tic-tac-toe), plus the raw match results for the
    Elo fit."""
    agent = make_player(game, net, cfg, rng, simulations=cfg.match_simulations or cfg.eval_simulations)
    results = {"random": play_match(game, agent, RandomPlayer(game, rng), cfg.eval_games),
               f"mcts{cfg.eval_rollouts}": play_match(game, agent, PureMCTS(game, cfg.eval_rollouts, rng),
                                                       cfg.eval_games)}
    scores = {"score_vs_random": results["random"]["score"],
              "score_vs_mcts": results[f"mcts{cfg.eval_rollouts}"]["score"]}
    if isinstance(game, TicTacToe):
        scores["losses_vs_minimax"] = exhaustive_vs_minimax(game, greedy_chooser(game, net, cfg))["losses"]
    return scores, results


def greedy_chooser(game: Game, net: AlphaZeroNet, cfg: AlphaZeroConfig):
    """The deterministic agent: `eval_simulations` PUCT simulations, no noise, most visited move, for a
    list of boards at once."""
    agent = make_player(game, net, cfg, rng=None)
    return lambda boards: agent.choose(boards, [agent.temperature_moves] * len(boards))


def final_evaluation(ctx: RunContext, game: Game, best: AlphaZeroNet, untrained: AlphaZeroNet,
                     cfg: AlphaZeroConfig, rng: np.random.Generator):
    agent = make_player(game, best, cfg, rng)
    vs_random = play_match(game, agent, RandomPlayer(game, rng), cfg.final_games)
    vs_mcts = play_match(game, agent, PureMCTS(game, cfg.final_rollouts, rng), cfg.final_games)
    metrics = {"eval_win_rate_vs_random": vs_random["wins"] / vs_random["games"],
               "eval_win_rate_vs_mcts": vs_mcts["wins"] / vs_mcts["games"],
               "eval_draw_rate_vs_mcts": vs_mcts["draws"] / vs_mcts["games"],
               "eval_loss_rate_vs_mcts": vs_mcts["losses"] / vs_mcts["games"],
               "eval_win_rate_vs_mcts_first": vs_mcts["wins_first"] / vs_mcts["games_first"],
               "eval_win_rate_vs_mcts_second": vs_mcts["wins_second"] / vs_mcts["games_second"]}
    table = [{"opponent": "random", **vs_random}, {"opponent": f"pure MCTS, {cfg.final_rollouts} rollouts", **vs_mcts}]
    if isinstance(game, TicTacToe):
        trained_lines = exhaustive_vs_minimax(game, greedy_chooser(game, best, cfg))
        untrained_lines = exhaustive_vs_minimax(game, greedy_chooser(game, untrained, cfg))
        any_lines = exhaustive_vs_minimax(game, greedy_chooser(game, best, cfg), any_opponent=True)
        metrics.update(eval_losses_vs_minimax=trained_lines["losses"], eval_lines_vs_minimax=trained_lines["lines"],
                       eval_losses_vs_minimax_first=trained_lines["losses_first"],
                       eval_losses_vs_minimax_second=trained_lines["losses_second"],
                       eval_untrained_losses_vs_minimax=untrained_lines["losses"],
                       eval_losses_vs_any_opponent=any_lines["losses"], eval_lines_vs_any_opponent=any_lines["lines"])
        table += [{"opponent": "minimax, every optimal line", **trained_lines},
                  {"opponent": "minimax, every optimal line (untrained network, same search)", **untrained_lines},
                  {"opponent": "every possible opponent move", **any_lines}]
    ctx.save_table("final_match", table, caption=(
        f"The best network with {cfg.eval_simulations} simulations per move, temperature 0, both colours."))
    results = {"random": vs_random, f"mcts{cfg.final_rollouts}": vs_mcts}
    return {k: float(v) for k, v in metrics.items()}, results


def _figures(ctx: RunContext, rows: list[dict], elo: dict[str, float]) -> None:
    if not rows:
        return
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in rows]
    evaluated = [r for r in rows if r["score_vs_mcts"] is not None]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.5))
    ax1.plot([r["generation"] for r in evaluated], [r["score_vs_random"] for r in evaluated], marker="o",
             label="vs random")
    ax1.plot([r["generation"] for r in evaluated], [r["score_vs_mcts"] for r in evaluated], marker="o",
             label="vs pure MCTS")
    ax1.plot(gens, [r["gate_score"] for r in rows], marker=".", ls=":", label="candidate vs best (gate)")
    for r in rows:
        if r["accepted"]:
            ax1.axvline(r["generation"], color="grey", alpha=0.15)
    ax1.set(xlabel="generation", ylabel="score", title="best network per generation (grey: accepted)",
            ylim=(-0.05, 1.05))
    ax1.legend(fontsize=8)
    ax2.plot(gens, [r["policy_loss"] for r in rows], label="policy −πᵀ log p")
    ax2.plot(gens, [r["value_loss"] for r in rows], label="value (ẑ − v)²")
    ax2.set(xlabel="generation", title="training loss")
    ax2.legend(fontsize=8)
    rated = [r for r in rows if r["elo"] is not None]
    ax3.plot([r["generation"] for r in rated], [r["elo"] for r in rated], marker=".", label="best network")
    for k, (player, rating) in enumerate(sorted((p, v) for p, v in elo.items() if not p.startswith("gen"))):
        ax3.axhline(rating, color=f"C{k + 1}", ls="--", lw=1, label=player)
    ax3.set(xlabel="generation", ylabel="Elo (random = 0)", title="Elo (Bradley-Terry over all matches)")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "generations")


def run_tictactoe(ctx: RunContext, cfg: AlphaZeroConfig) -> dict[str, float]:
    return run(ctx, cfg, TicTacToe())


def run_connect4(ctx: RunContext, cfg: AlphaZeroConfig) -> dict[str, float]:
    return run(ctx, cfg, ConnectFour())


GAME_OF = {"alphazero-tictactoe": TicTacToe, "alphazero-connect4": ConnectFour}

_PAPER = "Silver et al. 2017, Mastering the game of Go without human knowledge (Nature 550); AlphaZero, Science 2018"

register(Experiment(
    name="alphazero-tictactoe",
    topic="Reinforcement learning: AlphaGo Zero self-play with PUCT search (tic-tac-toe)",
    paper=_PAPER,
    config_cls=AlphaZeroConfig,
    presets={"smoke": {"generations": 2, "games_per_generation": 8, "parallel_games": 8, "simulations": 8,
                       "eval_simulations": 8, "train_steps": 5, "batch_size": 32, "channels": 8, "blocks": 1,
                       "value_hidden": 16, "gate_games": 4, "eval_games": 4, "eval_rollouts": 20,
                       "final_games": 4, "final_rollouts": 20, "replay_size": 2000},
             "quick": {"generations": 12, "games_per_generation": 64, "simulations": 50, "eval_simulations": 100,
                       "temperature_moves": 9, "q_weight": 0.5, "train_steps": 200, "batch_size": 128,
                       "replay_size": 20000, "gate_threshold": 0.5, "gate_games": 20, "eval_every": 4,
                       "eval_games": 20, "eval_rollouts": 100, "final_games": 50, "final_rollouts": 200},
             "full": {"generations": 24, "games_per_generation": 64, "simulations": 50, "eval_simulations": 100,
                      "temperature_moves": 9, "q_weight": 0.5, "train_steps": 200, "batch_size": 128,
                      "replay_size": 20000, "gate_threshold": 0.5, "gate_games": 20, "eval_games": 20,
                      "eval_rollouts": 100, "final_games": 100, "final_rollouts": 1000}},
    run=run_tictactoe,
    build_model=build_model,
    metric="eval_losses_vs_minimax",
    direction="min",
    environment="tic-tac-toe (3×3), self-play",
    references=(Reference(0, "game theory: tic-tac-toe is a draw under perfect play",
                          "lost lines against every optimal minimax reply, as first and second player"),),
    target=0.0,
    family="rl",
    threads=1,
))

register(Experiment(
    name="alphazero-connect4",
    topic="Reinforcement learning: AlphaGo Zero self-play with PUCT search (Connect Four 6×7)",
    paper=_PAPER,
    config_cls=AlphaZeroConfig,
    presets={"smoke": {"generations": 2, "games_per_generation": 4, "parallel_games": 4, "simulations": 3,
                       "eval_simulations": 3, "train_steps": 4, "batch_size": 32, "channels": 8, "blocks": 1,
                       "value_hidden": 16, "gate_games": 2, "eval_games": 2, "eval_every": 2, "eval_rollouts": 10,
                       "final_games": 2, "final_rollouts": 10, "replay_size": 2000},
             "quick": {"generations": 4, "games_per_generation": 64, "parallel_games": 64, "simulations": 50,
                       "fast_simulations": 16, "full_search_prob": 0.25, "eval_simulations": 100,
                       "match_simulations": 50, "q_weight": 0.5, "bf16": True, "train_steps": 50,
                       "gate_games": 10, "gate_temperature_moves": 4, "eval_games": 10, "eval_rollouts": 100,
                       "final_games": 20, "final_rollouts": 200},
             "full": {"generations": 200, "max_minutes": 30.0, "games_per_generation": 1024, "parallel_games": 512,
                      "simulations": 200, "fast_simulations": 40, "full_search_prob": 0.25, "eval_simulations": 800,
                      "match_simulations": 100, "q_weight": 0.5, "bf16": True, "replay_size": 80000,
                      "train_steps": 250, "gate_games": 40, "gate_temperature_moves": 4, "eval_every": 4,
                      "eval_games": 20, "eval_rollouts": 1000, "final_games": 100, "final_rollouts": 1000}},
    run=run_connect4,
    build_model=build_model,
    metric="eval_win_rate_vs_mcts",
    direction="max",
    environment="Connect Four (6×7), self-play",
    references=(Reference(0.9, "dldojo issue target", "≥ 90 % wins against pure MCTS with 1,000 rollouts per "
                          "move after ≤ 30 min of self-play on 2 cores, ≥ 50 games, both colours"),),
    target=0.9,
    family="rl",
    threads=2,  # the network's convolutions use both cores; the tree search is NumPy on one
))
