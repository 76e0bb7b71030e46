"""`association-rules`: which movies are liked together — Apriori vs FP-growth on MovieLens-100k.

Curriculum: machine learning basics — unsupervised learning, association analysis (market-basket analysis):
support, confidence and lift, frequent itemsets by Apriori (Agrawal & Srikant 1994) and FP-growth (Han, Pei &
Yin 2000). With σ(S) the number of transactions holding every item of S among M transactions:

    support(X ⇒ Y) = σ(X ∪ Y) / M,   confidence(X ⇒ Y) = σ(X ∪ Y) / σ(X),
    lift(X ⇒ Y) = confidence(X ⇒ Y) / (σ(Y) / M)

(`dldojo.classic.frequent_itemsets`, both algorithms written there and tested equal to mlxtend.)

Data: every MovieLens-100k user is one transaction, the movies they rated ≥ `like_threshold` (4: 55,375 of the
100,000 ratings, 59 movies a user on average). A fixed 20 % of the users (seed 0) is held out: rules are mined
on the other 80 % and then measured again on the held-out users — a rule that only describes its own data
loses confidence there (`test_confidence_mean`, the primary metric: the mean confidence of every mined rule on
users that did not shape it).

Protocol: (1) at each minimum support of `support_sweep` (one step each) Apriori and FP-growth mine the
training transactions and are timed, with mlxtend's `apriori` and `fpgrowth` on the same data as peers
(`peers`); every implementation must find the same itemsets and supports. (2) At `min_support`, rules with
confidence ≥ `min_confidence` are generated, listed with titles (by lift) and evaluated on held-out users.
The textbook expects FP-growth to be faster (two database scans, no candidates); the timings are measured
here, on these 754 dense transactions, and reported as they come out. FP-growth is timed in both forms of
`frequent_itemsets`: the pointer FP-tree of the paper (pure Python) and the same recursion with the conditional
bases as 0/1 matrices (NumPy, as the Apriori here is). Measured (full preset, AMD EPYC Zen 2, one thread, commit
523901d, results/association-rules-full.json, fastest of up to 3 calls): FP-growth in matrix form ties with
Apriori at 0.3 and 0.25 (≈ 10 ms each, most of it the one-hot table both build; 1.03×, within noise) and is
faster from 0.2 down: 1.3× at 0.2, 1.9× at 0.15, then 2.7× to 3.3× from 0.12 down to 0.04 (0.15 s vs 0.49 s at
0.08, 3.97 s vs 11.79 s at 0.05, 17.8 s vs 55.8 s at 0.04 with 2.5 million itemsets). The pointer-tree FP-growth trails the NumPy Apriori at
every support (58.9 s at 0.04): a Python loop over tree nodes against array operations — the data structure's
cost, not the algorithm's. mlxtend's fpgrowth overtakes its apriori at 0.06 (7.5 s vs 11.0 s) and is 6×
faster at 0.05 (22.1 s vs 133.4 s); mlxtend runs only down to `peers_down_to` (0.05 in full).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, ClassVar

import numpy as np

from dldojo.classic import frequent_itemsets as fi
from dldojo.data import movielens
from dldojo.engine.errors import DojoError
from dldojo.engine.registry import Experiment, register
from dldojo.engine.run import RunContext

RULES_FILE = "rules.json"
SAVED_ANTECEDENT = 2
"""rules.json keeps the rules `dldojo rules` answers from: one movie liked next, after at most 2 liked movies."""
SPLIT_SEED = 0


@dataclasses.dataclass
class RulesConfig:
    RANGES: ClassVar[dict] = {"like_threshold": (1, 5), "min_support": (1e-3, 1.0), "min_confidence": (0.0, 1.0),
                              "support_sweep": (1e-3, 1.0), "test_fraction": (0.0, 0.9), "top_rules": (1, 1000),
                              "timing_repeats": (1, 100), "peers_down_to": (0.0, 1.0)}
    """Allowed (low, high) of the numeric fields, checked before anything is created (`engine.config`)."""

    like_threshold: int = 4
    """A rating ≥ this counts as 'liked': a user's transaction is the set of movies they liked."""
    min_support: float = 0.1
    """Rules come from itemsets liked together by at least this share of the training users."""
    min_confidence: float = 0.6
    """Keep rules X ⇒ Y with confidence σ(X ∪ Y) / σ(X) at least this."""
    support_sweep: tuple[float, ...] = (0.3, 0.25, 0.2, 0.15, 0.12, 0.1, 0.08)
    """Minimum supports at which Apriori and FP-growth are timed, one step each (largest first)."""
    peers: bool = True
    """Also run mlxtend's apriori and fpgrowth at each minimum support (same results required; timed)."""
    peers_down_to: float = 0.0
    """mlxtend runs only at minimum supports ≥ this (its apriori took 92 s at 0.05 and grows ~5× per step down)."""
    timing_repeats: int = 3
    """Each implementation mines up to this many times per minimum support (fewer once its calls have taken a
    second), and the fastest time is reported."""
    test_fraction: float = 0.2
    """Share of the users held out (fixed, seed 0) to measure the rules again on users that did not shape them."""
    top_rules: int = 20
    """Rules listed with titles in the report: the best (by lift) of each itemset, and of single-movie pairs."""

    def validate(self) -> None:
        if not self.support_sweep:
            raise DojoError("support_sweep needs at least one minimum support.")
        if not self.min_support > 0:
            raise DojoError(f"min_support must be > 0, got {self.min_support}")


def transactions_of(data: movielens.MovieLens, like_threshold: int) -> list[set[int]]:
    """One set of MovieLens movie ids (1-based) per user: the movies the user rated ≥ like_threshold."""
    out: list[set[int]] = [set() for _ in range(data.n_users)]
    liked = data.ratings.rating >= like_threshold
    for user, item in zip(data.ratings.user[liked].tolist(), data.ratings.item[liked].tolist()):
        out[user].add(item + 1)
    return out


def split_users(n_users: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train users, held-out users): a fixed `default_rng(0)` permutation, the first share held out."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n_users)
    n_test = int(round(n_users * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def fastest(mine, repeats: int, enough_seconds: float = 1.0):
    """(result, seconds) of the fastest of up to `repeats` calls of `mine()`, stopping once the calls have
    taken `enough_seconds` together (timeit's convention: the minimum is the time the code needs; slower calls
    were disturbed by something else on the machine, which matters less the longer a call takes)."""
    best, spent = math.inf, 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = mine()
        took = time.perf_counter() - t0
        best, spent = min(best, took), spent + took
        if spent >= enough_seconds:
            break
    return result, best


def mine_all(transactions: list[set[int]], min_support: float, peers: bool,
             repeats: int = 1) -> tuple[dict, dict[str, float], list]:
    """Frequent itemsets by Apriori and FP-growth in both forms (and mlxtend's, with `peers`): the itemsets, each
    implementation's seconds (fastest of `repeats`), Apriori's levels. Different results are a bug."""
    count = fi.min_count(min_support, len(transactions))
    seconds, levels = {}, []

    def apriori():
        levels.clear()  # each call records its levels afresh
        return fi.apriori(transactions, count, levels=levels)

    by_apriori, seconds["apriori"] = fastest(apriori, repeats)
    results = {}
    results["fpgrowth"], seconds["fpgrowth"] = fastest(lambda: fi.fpgrowth(transactions, count), repeats)
    results["fpgrowth_matrix"], seconds["fpgrowth_matrix"] = fastest(
        lambda: fi.fpgrowth_matrix(transactions, count), repeats)
    if peers:
        for name, mine in mlxtend_miners(transactions, min_support):
            results[name], seconds[name] = fastest(mine, repeats)
    for name, found in results.items():
        if found != by_apriori:
            raise DojoError(f"{name} and Apriori disagree at min_support {min_support}: "
                            f"{len(found)} vs {len(by_apriori)} itemsets — a bug, please report it.")
    return by_apriori, seconds, levels


def mlxtend_miners(transactions: list[set[int]], min_support: float):
    """(name, mine) for mlxtend's apriori and fpgrowth on the one-hot table of `transactions`; `mine()` returns
    {itemset: σ} like ours (mlxtend gives supports as fractions; σ = support · M, rounded)."""
    import pandas as pd
    from mlxtend.frequent_patterns import apriori, fpgrowth

    matrix, items = fi.one_hot(transactions)
    table = pd.DataFrame(matrix, columns=items)

    def miner(mine):
        def run():
            found = mine(table, min_support=min_support, use_colnames=True)
            return {tuple(sorted(int(i) for i in s)): int(round(v * len(transactions)))
                    for s, v in zip(found["itemsets"], found["support"])}
        return run

    return [("mlxtend_apriori", miner(apriori)), ("mlxtend_fpgrowth", miner(fpgrowth))]


def measured_on(rules: list[fi.Rule], transactions: list[set[int]]) -> list[tuple[float, float] | None]:
    """(confidence, lift) of each rule on other transactions; None where its antecedent or consequent never
    occurs there."""
    matrix, items = fi.one_hot(transactions)
    column = {item: j for j, item in enumerate(items)}

    def holders(itemset) -> np.ndarray:
        if any(i not in column for i in itemset):
            return np.zeros(len(transactions), dtype=bool)
        return matrix[:, [column[i] for i in itemset]].all(1)

    out = []
    for rule in rules:
        a, c = holders(rule.antecedent), holders(rule.consequent)
        if not a.any() or not c.any():
            out.append(None)
            continue
        conf = float((a & c).sum() / a.sum())
        out.append((conf, conf / float(c.mean())))
    return out


def run(ctx: RunContext, cfg: RulesConfig) -> dict[str, float]:
    data = movielens.load()
    everyone = transactions_of(data, cfg.like_threshold)
    train_users, test_users = split_users(len(everyone), cfg.test_fraction)
    train, test = [everyone[u] for u in train_users], [everyone[u] for u in test_users]
    ctx.add_facts(train_transactions=len(train), test_transactions=len(test),
                  mean_transaction_size=float(np.mean([len(t) for t in train])))

    # 1. Apriori vs FP-growth (vs mlxtend) at each minimum support: one step each
    sweep = sorted(cfg.support_sweep, reverse=True)
    state: dict[str, Any] = {"sweep": []}
    step = ctx.restore(state)
    bar = ctx.progress(len(sweep), desc="min-support sweep", initial=step, unit="support")
    while step < len(sweep):
        found, seconds, levels = mine_all(train, sweep[step], cfg.peers and sweep[step] >= cfg.peers_down_to,
                                          cfg.timing_repeats)
        row = {"min_support": sweep[step], "min_count": fi.min_count(sweep[step], len(train)),
               "frequent_itemsets": len(found), "largest_itemset": max(map(len, found), default=0),
               "apriori_candidates": sum(lv.counted for lv in levels[1:]),
               "apriori_pruned": sum(lv.pruned for lv in levels[1:]), "apriori_passes": len(levels),
               **{f"{name}_seconds": s for name, s in seconds.items()}}
        state["sweep"].append(row)
        step += 1
        ctx.log(step, train_frequent_itemsets=len(found), **{k: v for k, v in row.items() if k.endswith("seconds")})
        bar.update(1)
        ctx.tick(step, state)
    bar.close()

    # 2. the rules at min_support, measured again on the held-out users
    itemsets, seconds, levels = mine_all(train, cfg.min_support, cfg.peers, cfg.timing_repeats)
    ctx.add_timings(**{f"{name}_seconds": s for name, s in seconds.items()},
                    # the textbook's claim, measured: Apriori's time over FP-growth's (matrix form) at the sweep's
                    # least and most favourable minimum support (> 1: FP-growth faster)
                    apriori_over_fpgrowth_min=min(r["apriori_seconds"] / r["fpgrowth_matrix_seconds"]
                                                  for r in state["sweep"]),
                    apriori_over_fpgrowth_max=max(r["apriori_seconds"] / r["fpgrowth_matrix_seconds"]
                                                  for r in state["sweep"]))
    ctx.add_facts(apriori_equals_fpgrowth=True, checked_against_mlxtend=cfg.peers)
    rules = fi.association_rules(itemsets, len(train), cfg.min_confidence)
    held_out = measured_on(rules, test)
    evaluated = [(r, m) for r, m in zip(rules, held_out) if m is not None]
    top = distinct(evaluated)[:cfg.top_rules]

    def mean(values) -> float:
        values = list(values)
        return float(np.mean(values)) if values else 0.0  # no rule: nothing claimed, nothing measured

    metrics = {
        "train_frequent_itemsets": len(itemsets), "train_largest_itemset": max(map(len, itemsets), default=0),
        "train_rules": len(rules), "train_confidence_mean": mean(r.confidence for r in rules),
        "train_lift_mean": mean(r.lift for r in rules),
        "test_rules_evaluated": len(evaluated), "test_confidence_mean": mean(m[0] for _, m in evaluated),
        "test_lift_mean": mean(m[1] for _, m in evaluated),
        "train_top_confidence_mean": mean(r.confidence for r, _ in top),
        "test_top_confidence_mean": mean(m[0] for _, m in top), "test_top_lift_mean": mean(m[1] for _, m in top),
    }

    # 3. report and what `dldojo rules` reloads
    titles = movie_titles(data)
    pairs = [(r, m) for r, m in evaluated if len(r.antecedent) == len(r.consequent) == 1][:cfg.top_rules]
    report(ctx, cfg, state["sweep"], levels, rules, held_out, top, pairs, titles)
    liked = sorted({i for t in train for i in t})
    ctx.save_json(RULES_FILE, {"n_transactions": len(train), "min_support": cfg.min_support,
                               "min_confidence": cfg.min_confidence, "max_saved_antecedent": SAVED_ANTECEDENT,
                               "titles": {str(i): titles.get(i, str(i)) for i in liked},
                               "rules": [[list(r.antecedent), list(r.consequent), round(r.support, 6),
                                          round(r.confidence, 6), round(r.lift, 6)] for r in rules
                                         if len(r.consequent) == 1 and len(r.antecedent) <= SAVED_ANTECEDENT]})
    return metrics


def movie_titles(data: movielens.MovieLens) -> dict[int, str]:
    """MovieLens id -> title; a title that two ids share (ml-100k lists a few films twice) gets its id appended."""
    counts: dict[str, int] = {}
    for t in data.titles:
        counts[t] = counts.get(t, 0) + 1
    return {i + 1: t if counts[t] == 1 else f"{t} [id {i + 1}]" for i, t in enumerate(data.titles)}


def distinct(rules: list) -> list:
    """The first (highest-lift) rule of each itemset: one itemset splits into many rules of equal support."""
    seen, out = set(), []
    for rule, measured in rules:
        itemset = frozenset(rule.antecedent + rule.consequent)
        if itemset not in seen:
            seen.add(itemset)
            out.append((rule, measured))
    return out


def names(itemset, titles: dict[int, str]) -> str:
    return " + ".join(titles.get(i, str(i)) for i in itemset)


def report(ctx: RunContext, cfg: RulesConfig, sweep: list[dict], levels: list[fi.AprioriLevel],
           rules: list[fi.Rule], held_out: list, top: list, pairs: list, titles: dict[int, str]) -> None:
    import matplotlib.pyplot as plt

    # mining time against the minimum support, and how many itemsets there are to find
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    supports = [r["min_support"] for r in sweep]
    for name, style, label in (("apriori", "o-", "Apriori (dldojo, NumPy)"),
                               ("fpgrowth_matrix", "D-", "FP-growth, matrix bases (dldojo, NumPy)"),
                               ("fpgrowth", "s-", "FP-growth, pointer tree (dldojo, Python)"),
                               ("mlxtend_apriori", "o--", "mlxtend apriori"),
                               ("mlxtend_fpgrowth", "s--", "mlxtend fpgrowth")):
        timed = [r for r in sweep if f"{name}_seconds" in r]
        if timed:
            ax.plot([r["min_support"] for r in timed], [r[f"{name}_seconds"] for r in timed], style, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("minimum support")
    ax.set_ylabel("seconds")
    ax.set_title(f"Mining time (fastest of {cfg.timing_repeats}), {ctx.facts.get('train_transactions')} transactions")
    ax.invert_xaxis()
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    ax2.plot(supports, [r["frequent_itemsets"] for r in sweep], "o-", label="frequent itemsets")
    ax2.plot(supports, [r["apriori_candidates"] for r in sweep], "^-", label="Apriori candidates counted")
    ax2.plot(supports, [r["apriori_pruned"] for r in sweep], "v-", label="Apriori candidates pruned")
    ax2.set_yscale("symlog", linthresh=1)  # log scale that also shows 0
    ax2.set_xlabel("minimum support")
    ax2.invert_xaxis()
    ax2.legend()
    ax2.grid(alpha=0.3, which="both")
    ax2.set_title("What there is to find")
    fig.tight_layout()
    ctx.save_figure(fig, "mining_time")
    ctx.save_table("mining_time", sweep, "One step per minimum support: itemsets found (every implementation "
                                         "found the same), Apriori's work, each implementation's seconds.")

    # Apriori's levels at min_support: candidates joined, pruned by an infrequent subset, found frequent
    shown = levels[1:]
    if shown:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        sizes = np.array([lv.size for lv in shown])
        for offset, key, label in ((-0.27, "joined", "joined"), (0, "counted", "counted (after pruning)"),
                                   (0.27, "frequent", "frequent")):
            ax.bar(sizes + offset, [max(getattr(lv, key), 0.5) for lv in shown], width=0.27, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("itemset size k")
        ax.set_ylabel("itemsets")
        ax.set_title(f"Apriori level by level, min support {cfg.min_support:g}")
        ax.legend()
        ctx.save_figure(fig, "apriori_levels")
    ctx.save_table("apriori_levels", [dataclasses.asdict(lv) for lv in levels],
                   "Level 1 counts every item; from level 2 on, candidates are joined from the previous level.")

    # every rule: support against confidence, coloured by lift
    if rules:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        points = ax.scatter([r.support for r in rules], [r.confidence for r in rules], c=[r.lift for r in rules],
                            s=8, cmap="viridis")
        fig.colorbar(points, ax=ax, label="lift")
        ax.set_xlabel("support")
        ax.set_ylabel("confidence")
        ax.set_title(f"{len(rules)} rules (min support {cfg.min_support:g}, min confidence {cfg.min_confidence:g})")
        ctx.save_figure(fig, "rules")
        measured = [(r.confidence, m[0]) for r, m in zip(rules, held_out) if m is not None]
        if measured:
            fig, ax = plt.subplots(figsize=(5, 4.6))
            ax.scatter(*zip(*measured), s=6, alpha=0.5)
            ax.plot([0, 1], [0, 1], color="black", lw=0.8)
            ax.set_xlim(min(cfg.min_confidence, 1) - 0.05, 1.0)
            ax.set_xlabel("confidence on the training users")
            ax.set_ylabel("confidence on held-out users")
            ax.set_title("Do the rules hold for users who did not shape them?")
            ctx.save_figure(fig, "held_out_confidence")
    for name, shown, what in (("top_rules", top, "the highest-lift rule of each of the itemsets with the highest lift"),
                              ("top_pair_rules", pairs, "'people who liked X also liked Y': one movie on each side")):
        ctx.save_table(name, [{"rank": k + 1, "if liked": names(r.antecedent, titles),
                               "then also liked": names(r.consequent, titles), "support": r.support,
                               "confidence": r.confidence, "lift": r.lift, "held-out confidence": m[0],
                               "held-out lift": m[1]} for k, (r, m) in enumerate(shown)],
                       f"{len(shown)} rules, {what} (training users), measured again on held-out users.")


register(Experiment(
    name="association-rules",
    topic="Machine learning basics: association rules (support, confidence, lift), Apriori vs FP-growth",
    paper="Agrawal & Srikant 1994 (Apriori); Han, Pei & Yin 2000 (FP-growth)",
    config_cls=RulesConfig,
    presets={"smoke": {"support_sweep": (0.2, 0.15), "min_support": 0.15, "min_confidence": 0.5, "peers": False,
                       "timing_repeats": 1},
             "quick": {},
             "full": {"support_sweep": (0.3, 0.25, 0.2, 0.15, 0.12, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04),
                      "min_support": 0.08, "peers_down_to": 0.05}},
    run=run,
    metric="test_confidence_mean",
    direction="max",
    datasets=("ml-100k",),
    family="classic",
    threads=1,
))
