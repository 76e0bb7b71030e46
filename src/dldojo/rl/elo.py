"""Elo ratings from match results: the Bradley-Terry model fitted by maximum likelihood.

Bradley & Terry (1952), in Elo's (1978) logistic scale: player i scores against player j with

    E[score_ij] = 1 / (1 + 10^((R_j − R_i) / 400))          (a draw counts as half a win)

and the ratings R maximise Σ_matches s_ij log E_ij + (n_ij − s_ij) log (1 − E_ij) over all recorded
matches at once, so players who never met are rated through common opponents (as in BayesElo or the
AlphaZero papers' "Elo from a tournament"). Ratings are relative: one anchor player is fixed (here the
random player at 0). A perfect score would put a rating at infinity, so every match gets `prior_draws`
virtual drawn games (add-half smoothing of the score, BayesElo's "virtual draws" prior): 10 wins in 10
games then mean ≈ +530 Elo, not +∞. Solved by Newton's method on the (concave) log-likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ELO_PER_NAT = 400 / math.log(10)  # R = ELO_PER_NAT · θ, where P(i beats j) = σ(θ_i − θ_j)


def fit_elo(matches: Sequence[tuple[str, str, float, int]], anchor: str, anchor_rating: float = 0.0,
            prior_draws: float = 1.0, iterations: int = 100) -> dict[str, float]:
    """matches: (player_a, player_b, a's score points = wins + draws/2, games). Returns {player: Elo}
    for every player connected to `anchor` through the matches (others are left out)."""
    players = sorted({p for a, b, _, _ in matches for p in (a, b)})
    if anchor not in players:
        return {}
    connected, grew = {anchor}, True
    while grew:  # players linked to the anchor by some chain of matches
        grew = False
        for a, b, _, _ in matches:
            if (a in connected) != (b in connected):
                connected |= {a, b}
                grew = True
    players = [p for p in players if p in connected]
    index = {p: k for k, p in enumerate(players)}
    pairs = [(index[a], index[b], score + prior_draws / 2, games + prior_draws)
             for a, b, score, games in matches if a in index and b in index and a != b]
    theta = np.zeros(len(players))
    free = np.array([p != anchor for p in players])
    for _ in range(iterations):
        gradient, hessian = np.zeros(len(players)), np.zeros((len(players), len(players)))
        for i, j, s, n in pairs:
            p = 1 / (1 + math.exp(theta[j] - theta[i]))
            gradient[i] += s - n * p
            gradient[j] -= s - n * p
            w = n * p * (1 - p)
            hessian[i, i] -= w
            hessian[j, j] -= w
            hessian[i, j] += w
            hessian[j, i] += w
        if not free.any():
            break
        step = np.linalg.solve(hessian[np.ix_(free, free)], gradient[free])
        theta[free] -= step
        if np.abs(step).max() < 1e-10:
            break
    return {p: anchor_rating + ELO_PER_NAT * float(t) for p, t in zip(players, theta)}
