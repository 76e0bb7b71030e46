"""Association rules: the course's worked examples exactly, Apriori = FP-growth = brute force, parity with
mlxtend (apriori, fpgrowth, association_rules) on MovieLens-100k, and the `rules_for` action."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dldojo.classic import frequent_itemsets as fi

XYZ = [{"X", "Y"}, {"X", "Z"}, {"X", "Y", "Z", "W"}]
TEXTBOOK = [{1, 3, 4}, {2, 3, 5}, {1, 2, 3, 5}, {2, 5}]  # Agrawal & Srikant 1994's example database


def test_support_confidence_lift_worked_example():
    # σ(X) = 3, σ(X ∪ Y) = 2, M = 3: support = confidence = 2/3; σ(Y) = 2, so lift = (2/3) / (2/3) = 1
    assert fi.sigma(XYZ, {"X"}) == 3 and fi.sigma(XYZ, {"X", "Y"}) == 2 and len(XYZ) == 3
    assert fi.support(XYZ, {"X"}, {"Y"}) == pytest.approx(2 / 3, abs=1e-15)
    assert fi.confidence(XYZ, {"X"}, {"Y"}) == pytest.approx(2 / 3, abs=1e-15)
    assert fi.lift(XYZ, {"X"}, {"Y"}) == pytest.approx(1.0, abs=1e-15)
    rules = {(r.antecedent, r.consequent): r for r in fi.association_rules(fi.apriori(XYZ, 1), len(XYZ))}
    rule = rules[(("X",), ("Y",))]
    assert (rule.support, rule.confidence, rule.lift) == pytest.approx((2 / 3, 2 / 3, 1.0), abs=1e-15)


@pytest.mark.parametrize("mine", [fi.apriori, fi.fpgrowth, fi.fpgrowth_matrix],
                         ids=["apriori", "fpgrowth", "fpgrowth_matrix"])
def test_textbook_database_min_support_2(mine):
    found = mine(TEXTBOOK, 2)
    assert found == {(1,): 2, (2,): 3, (3,): 3, (5,): 3, (1, 3): 2, (2, 3): 2, (2, 5): 3, (3, 5): 2, (2, 3, 5): 2}
    assert [s for s in found if len(s) == 3] == [(2, 3, 5)]  # the only frequent 3-itemset


def test_apriori_candidates_join_and_prune():
    # L2 of the textbook database: {1,3} {2,3} {2,5} {3,5}. Joining on a common first item gives {2,3,5}
    # only ({1,3} has no partner); its subsets {2,3} {2,5} {3,5} are all frequent, so nothing is pruned.
    candidates, joined, pruned = fi.apriori_candidates([(1, 3), (2, 3), (2, 5), (3, 5)])
    assert candidates == [(2, 3, 5)] and (joined, pruned) == (1, 0)
    # {1,2,3} joined from {1,2} and {1,3}, pruned: its subset {2,3} is not frequent
    candidates, joined, pruned = fi.apriori_candidates([(1, 2), (1, 3)])
    assert candidates == [] and (joined, pruned) == (1, 1)
    levels = []
    fi.apriori(TEXTBOOK, 2, levels=levels)
    assert [(lv.size, lv.counted, lv.frequent) for lv in levels] == [(1, 5, 4), (2, 6, 4), (3, 1, 1)]


def brute_force(transactions, min_count):
    items = sorted({i for t in transactions for i in t})
    found = {}
    for k in range(1, len(items) + 1):
        level = {s: fi.sigma(transactions, s) for s in itertools.combinations(items, k)}
        level = {s: n for s, n in level.items() if n >= min_count}
        if not level:
            break
        found.update(level)
    return found


@pytest.mark.parametrize("seed", range(6))
def test_apriori_and_fpgrowth_equal_brute_force_on_random_databases(seed):
    rng = np.random.default_rng(seed)
    popularity = rng.uniform(0.05, 0.7, size=9)
    transactions = [set(np.flatnonzero(rng.random(9) < popularity).tolist()) for _ in range(int(rng.integers(5, 40)))]
    min_count = int(rng.integers(1, 5))
    expected = brute_force(transactions, min_count)
    assert fi.apriori(transactions, min_count) == expected
    assert fi.fpgrowth(transactions, min_count) == expected
    assert fi.fpgrowth_matrix(transactions, min_count) == expected


def test_fpgrowth_matrix_edge_cases():
    # empty transactions, nothing frequent, one frequent item, items that are strings
    assert fi.fpgrowth_matrix([set(), {1}, {1}], 2) == {(1,): 2}
    assert fi.fpgrowth_matrix([set(), {1}, {2}], 2) == {}
    assert fi.fpgrowth_matrix([set()], 1) == {}
    assert fi.fpgrowth_matrix(XYZ, 1) == fi.apriori(XYZ, 1) == brute_force(XYZ, 1)


def test_fp_tree_shares_prefixes():
    root, header = fi.fp_tree([((2, 3, 5), 1), ((2, 5), 1), ((1, 3), 1)], min_count=1)
    # order by decreasing count (2, 3, 5: twice; 1: once; ties by item): 2-3-5, 2-5 share the node 2
    assert set(root.children) == {2, 3} and root.children[2].count == 2
    assert header[5][0] == 2 and header[1][0] == 1


def test_min_count_matches_the_fraction():
    for m in (3, 7, 754, 943):
        for s in (0.05, 0.1, 0.2, 1 / 3, 0.5, 1.0):
            c = fi.min_count(s, m)
            assert c / m >= s and (c == 1 or (c - 1) / m < s)


def test_rules_enumerate_every_split_with_its_measures():
    rules = fi.association_rules(fi.apriori(TEXTBOOK, 2), len(TEXTBOOK), min_confidence=0.0)
    by_sides = {(r.antecedent, r.consequent): r for r in rules}
    assert len(rules) == 2 * 4 + 6  # four 2-itemsets give 2 rules each, {2,3,5} gives 2³ − 2
    r = by_sides[((2, 3), (5,))]  # σ({2,3,5}) = 2, σ({2,3}) = 2, σ({5}) = 3, M = 4
    assert (r.support, r.confidence, r.lift) == pytest.approx((0.5, 1.0, 4 / 3))
    assert [x.lift for x in rules] == sorted((x.lift for x in rules), reverse=True)


# ----- parity with mlxtend on MovieLens-100k -----
@pytest.fixture(scope="module")
def liked_movies():
    import os

    if not os.environ.get("DLDOJO_DATA"):
        pytest.skip("set DLDOJO_DATA to the real datasets to run this test")
    from dldojo.classic.association_rules import transactions_of
    from dldojo.data import movielens

    return transactions_of(movielens.load(), like_threshold=4)


@pytest.mark.parametrize("min_support", [0.2, 0.12])
def test_itemsets_and_rules_equal_mlxtend_on_movielens(liked_movies, min_support):
    import pandas as pd
    from mlxtend.frequent_patterns import apriori, association_rules, fpgrowth

    transactions = liked_movies
    assert len(transactions) == 943
    count = fi.min_count(min_support, len(transactions))
    ours = fi.apriori(transactions, count)
    assert fi.fpgrowth(transactions, count) == ours
    assert fi.fpgrowth_matrix(transactions, count) == ours
    matrix, items = fi.one_hot(transactions)
    table = pd.DataFrame(matrix, columns=items)
    for mine in (apriori, fpgrowth):
        theirs = mine(table, min_support=min_support, use_colnames=True)
        supports = {tuple(sorted(int(i) for i in s)): v for s, v in zip(theirs["itemsets"], theirs["support"])}
        assert set(supports) == set(ours)
        np.testing.assert_allclose([supports[s] for s in ours], [n / len(transactions) for n in ours.values()],
                                   rtol=1e-12)
    their_rules = association_rules(theirs, num_itemsets=len(transactions), metric="confidence", min_threshold=0.5)
    expected = {(tuple(sorted(int(i) for i in a)), tuple(sorted(int(i) for i in c))): (s, conf, lift)
                for a, c, s, conf, lift in zip(their_rules["antecedents"], their_rules["consequents"],
                                               their_rules["support"], their_rules["confidence"], their_rules["lift"])}
    rules = fi.association_rules(ours, len(transactions), min_confidence=0.5)
    assert len(rules) == len(expected) > 10
    for r in rules:
        np.testing.assert_allclose((r.support, r.confidence, r.lift), expected[(r.antecedent, r.consequent)],
                                   rtol=1e-12)


# ----- the experiment's action -----
def test_rules_for_action_on_a_smoke_run(synthetic_data):
    import dldojo
    from dldojo.engine.errors import DojoError

    r = dldojo.run("association-rules", preset="smoke", quiet=True, min_support=0.1, min_confidence=0.3)
    assert r.metrics["train_rules"] > 0
    saved = r.loaded.read_json("rules.json")
    movie = saved["rules"][0][0][0]
    table = r.rules_for(movie, n=3)
    assert 1 <= len(table) <= 3
    assert all(saved["titles"][str(movie)] in row["if liked"] for row in table)
    assert [row["lift"] for row in table] == sorted((row["lift"] for row in table), reverse=True)
    with pytest.raises(DojoError, match="matches|no liked movie"):
        r.rules_for("Film 1")  # 'Film 1', 'Film 10', ... are all matches
    with pytest.raises(DojoError, match="classify needs a run of"):
        r.classify("free prize")
