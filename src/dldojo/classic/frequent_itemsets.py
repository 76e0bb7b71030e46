"""Association rules: support, confidence, lift; frequent itemsets by Apriori and by FP-growth (teaching code).

M transactions (market baskets; here: the movies one user liked), σ(S) = the number of transactions that
contain every item of the itemset S. For a rule X ⇒ Y (X, Y disjoint):

    support(X ⇒ Y)    = σ(X ∪ Y) / M                  how often the rule applies at all
    confidence(X ⇒ Y) = σ(X ∪ Y) / σ(X)               an estimate of P(Y | X)
    lift(X ⇒ Y)       = confidence(X ⇒ Y) / (σ(Y) / M)  P(Y | X) / P(Y): 1 = independent, > 1 = X raises Y

Mining first finds every frequent itemset (σ(S) ≥ a minimum count), then splits each one into rules.
Both algorithms rest on downward closure: every subset of a frequent itemset is frequent.

- Apriori (Agrawal & Srikant 1994): level by level. Candidates of size k + 1 are joined from two frequent
  k-itemsets that share their first k − 1 items, and pruned when any of their k-subsets is not frequent
  (it cannot be frequent itself); the survivors are counted in one pass over the database.
- FP-growth (Han, Pei & Yin 2000): no candidates. The transactions, each reduced to its frequent items in
  order of decreasing frequency, are stored as a prefix tree (FP-tree) whose shared prefixes hold counts; for
  each item, the paths that end in it (its conditional pattern base) form a smaller FP-tree that is mined
  recursively, every itemset found there extended by that item. Two forms here: `fpgrowth` with the pointer
  tree of the paper (the one to read), and `fpgrowth_matrix`, the same recursion with each conditional pattern
  base held as a 0/1 matrix (the one that is fast in NumPy, like `apriori`).

Results are dicts {itemset (sorted tuple of items): σ}; `association_rules` turns them into rules. Tested
equal to `mlxtend.frequent_patterns` (apriori, fpgrowth, association_rules) on MovieLens-100k.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

Itemset = tuple
Transactions = Sequence[Iterable[Hashable]]


# ----- the three measures, from their definitions -----
def sigma(transactions: Transactions, itemset: Iterable[Hashable]) -> int:
    """σ(S): the number of transactions containing every item of S."""
    wanted = set(itemset)
    return sum(wanted <= set(t) for t in transactions)


def support(transactions: Transactions, antecedent: Iterable[Hashable], consequent: Iterable[Hashable]) -> float:
    return sigma(transactions, {*antecedent, *consequent}) / len(transactions)


def confidence(transactions: Transactions, antecedent: Iterable[Hashable], consequent: Iterable[Hashable]) -> float:
    return sigma(transactions, {*antecedent, *consequent}) / sigma(transactions, antecedent)


def lift(transactions: Transactions, antecedent: Iterable[Hashable], consequent: Iterable[Hashable]) -> float:
    return confidence(transactions, antecedent, consequent) / (sigma(transactions, consequent) / len(transactions))


def min_count(min_support: float, n_transactions: int) -> int:
    """The smallest count c with c / M ≥ min_support (what "support ≥ min_support" means in counts)."""
    c = max(0, math.ceil(min_support * n_transactions))
    while c > 0 and (c - 1) / n_transactions >= min_support:
        c -= 1
    while c / n_transactions < min_support:
        c += 1
    return max(c, 1)


def one_hot(transactions: Transactions, items: Sequence[Hashable] | None = None) -> tuple[np.ndarray, list]:
    """(M × items boolean matrix, the items in column order: sorted unless given)."""
    items = sorted({i for t in transactions for i in t}) if items is None else list(items)
    column = {item: j for j, item in enumerate(items)}
    matrix = np.zeros((len(transactions), len(items)), dtype=bool)
    kept = [[column[i] for i in t if i in column] for t in transactions]
    rows = np.repeat(np.arange(len(kept)), [len(k) for k in kept])
    matrix[rows, np.fromiter(itertools.chain.from_iterable(kept), dtype=np.int64, count=len(rows))] = True
    return matrix, items


# ----- Apriori -----
@dataclasses.dataclass
class AprioriLevel:
    """What one level of Apriori did: candidates joined, pruned by a subset, counted, found frequent."""

    size: int
    joined: int
    pruned: int
    counted: int
    frequent: int


def apriori_candidates(level: Sequence[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], int, int]:
    """Join frequent k-itemsets (sorted tuples, in sorted order) that share their first k − 1 items; prune
    every candidate with an infrequent k-subset. Returns (candidates, joined, pruned)."""
    frequent = set(level)
    candidates, joined = [], 0
    for _, group in itertools.groupby(level, key=lambda s: s[:-1]):
        group = list(group)
        for a, b in itertools.combinations(group, 2):  # same prefix, last items a[-1] < b[-1]
            joined += 1
            candidate = a + b[-1:]
            if all(candidate[:i] + candidate[i + 1:] in frequent for i in range(len(candidate) - 2)):
                candidates.append(candidate)  # (dropping either of the last two items gives a or b: frequent)
    return candidates, joined, joined - len(candidates)


def count_candidates(matrix: np.ndarray, candidates: Sequence[tuple[int, ...]],
                     chunk_cells: int = 1 << 24) -> np.ndarray:
    """σ of every candidate: one pass over the transactions (rows of `matrix`), in chunks of candidates."""
    if not candidates:
        return np.zeros(0, dtype=np.int64)
    columns = np.array(candidates, dtype=np.int64)
    per_chunk = max(1, chunk_cells // (matrix.shape[0] * columns.shape[1]))
    return np.concatenate([matrix[:, columns[s:s + per_chunk]].all(axis=2).sum(axis=0)
                           for s in range(0, len(columns), per_chunk)]).astype(np.int64)


def apriori(transactions: Transactions, min_count: int, max_size: int = 0,
            levels: list[AprioriLevel] | None = None) -> dict[Itemset, int]:
    """Every itemset contained in at least `min_count` transactions, level by level (`max_size` > 0 stops
    there); `levels`, when given, receives one `AprioriLevel` per size."""
    matrix, items = one_hot(transactions)
    counts = matrix.sum(0)
    keep = np.flatnonzero(counts >= min_count)  # L1; the matrix shrinks to the frequent items' columns
    matrix = matrix[:, keep]
    found = {(int(j),): int(counts[keep[j]]) for j in range(len(keep))}
    if levels is not None:
        levels.append(AprioriLevel(1, len(items), 0, len(items), len(found)))
    level, size = sorted(found), 1
    while level and (not max_size or size < max_size):
        candidates, joined, pruned = apriori_candidates(level)
        sigmas = count_candidates(matrix, candidates)
        level = [c for c, n in zip(candidates, sigmas) if n >= min_count]
        found.update({c: int(n) for c, n in zip(candidates, sigmas) if n >= min_count})
        size += 1
        if levels is not None and joined:
            levels.append(AprioriLevel(size, joined, pruned, len(candidates), len(level)))
    return {tuple(items[keep[j]] for j in itemset): n for itemset, n in found.items()}


# ----- FP-growth -----
class FPNode:
    __slots__ = ("item", "count", "parent", "children", "link", "prefix")

    def __init__(self, item: int | None, parent: FPNode | None):
        self.item, self.count, self.parent = item, 0, parent
        self.children: dict[int, FPNode] = {}
        self.link: FPNode | None = None  # the next node of the same item (the header table's chain)
        # the items on the path from the root down to this node's parent, stored once when the node is made:
        # a node's conditional-pattern-base path is then read, not walked up node by node each time
        below_root = parent is not None and parent.item is not None
        self.prefix: tuple[int, ...] = parent.prefix + (parent.item,) if below_root else ()


def _grow(paths: Sequence[tuple[Sequence[int], int]], frequent: dict[int, int],
          rank: dict[int, tuple] | None) -> tuple[FPNode, dict[int, list]]:
    """Insert (items, count) paths, reduced to the `frequent` items {item: σ}, into a new FP-tree sharing
    prefixes; with `rank` each path is first ordered by it, without it the paths are already in the tree's
    order. Returns (root, header) with header[item] = [σ(item), first node of the item's chain]."""
    root, header = FPNode(None, None), {i: [c, None] for i, c in frequent.items()}
    for items, n in paths:
        node = root
        kept = [i for i in items if i in frequent]
        if rank is not None:
            kept.sort(key=rank.__getitem__)
        for i in kept:
            child = node.children.get(i)
            if child is None:
                child = node.children[i] = FPNode(i, node)
                child.link, header[i][1] = header[i][1], child
            child.count += n
            node = child
    return root, header


def fp_tree(paths: Iterable[tuple[Sequence[int], int]], min_count: int) -> tuple[FPNode, dict[int, list]]:
    """Build an FP-tree from (items, count) paths: each path reduced to its frequent items, ordered by
    decreasing count (ties: item order), inserted sharing prefixes. Returns (root, header) with
    header[item] = [σ(item), first node of the item's chain]."""
    paths = list(paths)
    counts: dict[int, int] = {}
    for items, n in paths:
        for i in items:
            counts[i] = counts.get(i, 0) + n
    frequent = {i: c for i, c in counts.items() if c >= min_count}
    return _grow(paths, frequent, {i: (-c, i) for i, c in frequent.items()})


def single_path(root: FPNode) -> list[FPNode] | None:
    """The nodes of the tree from the root down when it is one path (no node has two children), else None."""
    path, node = [], root
    while node.children:
        if len(node.children) > 1:
            return None
        (node,) = node.children.values()
        path.append(node)
    return path


def fp_growth_mine(root: FPNode, header: dict[int, list], suffix: tuple[int, ...], min_count: int,
                   out: dict[Itemset, int]) -> None:
    """Every frequent itemset of the FP-tree (`root`, `header`), each extended by `suffix`.

    A conditional FP-tree keeps the order of the tree it comes from (its paths are prefixes of that tree's
    paths) instead of re-sorting by the conditional counts as Han et al. do: any fixed order gives a valid
    FP-tree, and no path is sorted again (the trees are a little less compact)."""
    path = single_path(root)
    if path is not None:  # Han et al.'s single-path case: every combination of its nodes is frequent, with
        for k in range(1, len(path) + 1):  # the count of its deepest node (counts only fall down a path)
            for nodes in itertools.combinations(path, k):
                out[tuple(sorted((*(n.item for n in nodes), *suffix)))] = nodes[-1].count
        return
    for item, (count, node) in header.items():
        itemset = (item, *suffix)
        out[tuple(sorted(itemset))] = count
        # the conditional pattern base: the path above every node of `item`, with that node's count; the
        # items' counts in it are taken on the way (they decide which items the conditional tree keeps)
        base, counts = [], {}
        while node is not None:
            if node.prefix:
                base.append((node.prefix, node.count))
                for i in node.prefix:
                    counts[i] = counts.get(i, 0) + node.count
            node = node.link
        frequent = {i: c for i, c in counts.items() if c >= min_count}
        if frequent:
            fp_growth_mine(*_grow(base, frequent, None), itemset, min_count, out)


def fpgrowth(transactions: Transactions, min_count: int) -> dict[Itemset, int]:
    """Every itemset contained in at least `min_count` transactions, by FP-growth."""
    items = sorted({i for t in transactions for i in t})
    code = {item: j for j, item in enumerate(items)}
    root, header = fp_tree(((tuple(code[i] for i in set(t)), 1) for t in transactions), min_count)
    found: dict[Itemset, int] = {}
    fp_growth_mine(root, header, (), min_count, found)
    return {tuple(items[j] for j in itemset): n for itemset, n in found.items()}


def fpgrowth_matrix(transactions: Transactions, min_count: int) -> dict[Itemset, int]:
    """Every itemset contained in at least `min_count` transactions, by FP-growth's recursion with each
    conditional pattern base held as a 0/1 matrix instead of a pointer tree (NumPy, like `apriori`).

    Same divide and conquer as `fpgrowth`: items ranked by decreasing count; the conditional pattern base of
    an itemset is the set of transactions containing it, each cut to the items ranked before its lowest-ranked
    item. Here that base is a matrix, one row per transaction, and the counts of every item in every
    conditional base one level down come from one matrix product — C = WᵀW, C[i, j] = σ(suffix ∪ {i, j}) —
    which replaces the walk along the header chains. Only the items frequent in a base (C[i, j] ≥ min_count,
    i ranked before j) stay in its columns; a base with one such item ends the recursion (the itemset is
    emitted, nothing is left to mine).

    Unlike Apriori there is no join, no subset check and no pass over the whole database: each count is
    taken inside a base that only holds the transactions containing the suffix, and the bases shrink as the
    suffix grows. Unlike `fpgrowth`, each step is a few array operations, not a Python loop over nodes; it
    gives up the tree's sharing of common prefixes (merging identical rows, `np.unique`, was measured slower
    on these long, nearly all distinct transactions)."""
    matrix, items = one_hot(transactions)
    counts = matrix.sum(0)
    keep = np.flatnonzero(counts >= min_count)
    order = keep[np.lexsort((keep, -counts[keep]))]  # decreasing count, ties by item (as `fp_tree`)
    found: dict[Itemset, int] = {(items[j],): int(counts[j]) for j in order}
    base = matrix[:, order]
    base = base[base.any(1)]
    if len(order) >= 2:
        dtype = np.float32 if len(base) < 1 << 24 else np.float64  # counts stay exact integers
        _mine_matrix(base.astype(dtype), [items[j] for j in order], (), min_count, found)
    return found


def _mine_matrix(base: np.ndarray, labels: list, suffix: tuple, min_count: int, out: dict[Itemset, int]) -> None:
    """Every frequent itemset of two or more items of the conditional base `base` (its columns: `labels`, in
    rank order, each already frequent with `suffix`), each extended by `suffix`, into `out`."""
    pairs = base.T @ base
    frequent = pairs >= min_count
    for j in range(1, len(labels)):
        ranked_before = np.flatnonzero(frequent[:j, j])
        if not len(ranked_before):
            continue
        itemset = (*suffix, labels[j])
        before = ranked_before.tolist()
        for i, n in zip(before, pairs[ranked_before, j].tolist()):
            out[tuple(sorted((*itemset, labels[i])))] = int(n)
        if len(before) >= 2:  # the conditional base of `itemset`: its rows, cut to the items frequent in it
            _mine_matrix(base[base[:, j] > 0][:, ranked_before], [labels[i] for i in before], itemset,
                         min_count, out)


# ----- rules -----
@dataclasses.dataclass(frozen=True)
class Rule:
    antecedent: tuple
    consequent: tuple
    support: float
    confidence: float
    lift: float
    antecedent_support: float
    consequent_support: float


def association_rules(itemsets: dict[Itemset, int], n_transactions: int, min_confidence: float = 0.0) -> list[Rule]:
    """Every rule X ⇒ Y with X ∪ Y a frequent itemset (of 2 or more items), X and Y non-empty, and
    confidence ≥ `min_confidence`; ordered by decreasing lift, then confidence, then items."""
    M, rules = n_transactions, []
    for itemset, n in itemsets.items():
        for k in range(1, len(itemset)):
            for antecedent in itertools.combinations(itemset, k):
                consequent = tuple(i for i in itemset if i not in antecedent)
                conf = n / itemsets[antecedent]  # downward closure: every subset was found too
                if conf >= min_confidence:
                    rules.append(Rule(antecedent, consequent, n / M, conf, conf / (itemsets[consequent] / M),
                                      itemsets[antecedent] / M, itemsets[consequent] / M))
    rules.sort(key=lambda r: (-r.lift, -r.confidence, r.antecedent, r.consequent))
    return rules
