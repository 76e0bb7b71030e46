"""Corpus BLEU (Papineni, Roukos, Ward & Zhu 2002), written out for teaching, and sacrebleu's for reporting.

    BLEU = BP · exp( (1/4) Σ_{n=1..4} log p_n ) × 100
    p_n  = Σ_sentences Σ_{g ∈ n-grams(hyp)} min(count_hyp(g), count_ref(g)) / Σ_sentences |n-grams(hyp)|
    BP   = 1 if c ≥ r else exp(1 − r / c)          (c, r: total hypothesis / reference length in tokens)

p_n is the *modified* (clipped) n-gram precision: a hypothesis n-gram is credited at most as often as it
occurs in the reference. Counts are summed over the whole corpus before dividing (corpus BLEU, not the
mean of sentence scores).

Smoothing, to match sacrebleu's default `smooth_method="exp"` (NIST mteval-v13a, Chen & Cherry 2014
method 3): if an order n has no match at all, p_n = 1 / (2^k · total_n), where k counts the orders with
zero matches so far. It only matters when some order has no match (tiny or terrible outputs); on real
test sets every order has matches and smoothing changes nothing. As in sacrebleu, a corpus with no
match of any order, or an empty output, scores 0.

The data of this project are pre-tokenized (English by the Stanford tokenizer, Japanese by KyTea), so
BLEU is computed on those tokens: sacrebleu with `tokenize="none"` on space-joined tokens.
`corpus_bleu` (the teaching version) equals `sacrebleu_corpus` to floating-point precision (tested).
"""

from __future__ import annotations

import math
from collections import Counter


def ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hyps: list[list[str]], refs: list[list[str]], max_order: int = 4) -> float:
    """Corpus BLEU × 100 of tokenized hypotheses against one tokenized reference each."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    matches = [0] * max_order  # clipped n-gram matches, per order
    totals = [0] * max_order  # hypothesis n-grams, per order
    hyp_len = ref_len = 0
    for hyp, ref in zip(hyps, refs):
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, max_order + 1):
            hyp_counts, ref_counts = ngrams(hyp, n), ngrams(ref, n)
            matches[n - 1] += sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or not any(matches):
        return 0.0
    brevity_penalty = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    log_precisions = []
    zero_orders = 0
    for n in range(max_order):
        if totals[n] == 0:  # hypotheses too short to hold any n-gram of this order: BLEU is 0
            return 0.0
        if matches[n] == 0:  # "exp" smoothing
            zero_orders += 1
            precision = 1.0 / (2 ** zero_orders * totals[n])
        else:
            precision = matches[n] / totals[n]
        log_precisions.append(math.log(precision))
    return 100.0 * brevity_penalty * math.exp(sum(log_precisions) / max_order)


def sacrebleu_corpus(hyps: list[list[str]], refs: list[list[str]], smooth_method: str = "exp") -> float:
    """sacrebleu.corpus_bleu on space-joined pre-tokenized text with tokenize='none' (the reported number)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu([" ".join(h) for h in hyps], [[" ".join(r) for r in refs]],
                                       tokenize="none", smooth_method=smooth_method, force=True).score)
