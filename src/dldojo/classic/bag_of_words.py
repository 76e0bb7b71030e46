"""Bag of words: text -> tokens -> a sparse document × vocabulary matrix of counts (what naive Bayes reads).

Word order is thrown away; a document is the count of each vocabulary word in it (n-grams of up to `ngrams`
consecutive tokens keep a little order: "not good" becomes one feature). The vocabulary is built from the
training documents only — every token seen there at least `min_count` times; other tokens are ignored.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

TOKENIZERS = {
    # SMS: lower-cased runs of letters / digits / currency signs (so "£1000" and "txt" are tokens), an
    # apostrophe suffix kept with its word ("don't"), and the punctuation that marks shouting (! ? &)
    "sms": re.compile(r"[a-z0-9£$€]+(?:'[a-z]+)?|[!?&]"),
    # already tokenized text (SST: lower-cased, tokens separated by spaces, punctuation as tokens)
    "whitespace": re.compile(r"\S+"),
}


def tokenize(text: str, tokenizer: str = "sms") -> list[str]:
    return TOKENIZERS[tokenizer].findall(text.lower())


def ngrams_of(tokens: Sequence[str], n: int) -> list[str]:
    """The tokens, then every run of 2 … n consecutive tokens joined by a space."""
    out = list(tokens)
    for k in range(2, n + 1):
        out += [" ".join(tokens[i:i + k]) for i in range(len(tokens) - k + 1)]
    return out


class Vocabulary:
    """Feature name <-> column index, in a fixed order (by decreasing training count, then alphabetically)."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], min_count: int = 1) -> Vocabulary:
        counts = collections.Counter(t for doc in documents for t in doc)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(kept)


def count_matrix(documents: Sequence[Sequence[str]], vocab: Vocabulary) -> sp.csr_matrix:
    """documents × vocabulary counts (float64 CSR); features outside the vocabulary are dropped."""
    rows, cols = [], []
    for r, doc in enumerate(documents):
        for token in doc:
            j = vocab.index.get(token)
            if j is not None:
                rows.append(r)
                cols.append(j)
    data = np.ones(len(rows), dtype=np.float64)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(len(documents), len(vocab)))
    matrix.sum_duplicates()
    return matrix


def featurize(texts: Sequence[str], tokenizer: str, ngrams: int) -> list[list[str]]:
    """Each text as its list of features (tokens and n-grams)."""
    return [ngrams_of(tokenize(t, tokenizer), ngrams) for t in texts]
