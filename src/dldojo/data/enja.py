"""small_parallel_enja (Matsumura / odashi): 50,000 / 500 / 500 English-Japanese sentence pairs.

Pairs from the Tanaka Corpus (Tatoeba) filtered to 4-16 words. Both sides are already tokenized:
English lowercased and split by the Stanford tokenizer ("can 't", "i 'm"), Japanese segmented by KyTea.
Tokens are separated by single spaces, one sentence per line, files `{train,dev,test}.{en,ja}`.

Vocabulary: every token seen at least `min_freq` (2) times in the training side of that language, after
the four specials `<pad>` (0), `<bos>` (1), `<eos>` (2), `<unk>` (3). Either direction can be loaded;
en→ja is the reference direction.

Batching: `token_batches` groups sentences of similar length (length bucketing) so that each batch holds
at most `max_tokens` padded source + target tokens — far less padding, and so far less wasted compute,
than fixed-size batches of random sentences. The grouping is a pure function of (seed, epoch), so a
resumed run regenerates an interrupted epoch exactly.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dldojo.data.store import Dataset, locate, register_dataset, write_manifest
from dldojo.engine.errors import DojoError

ENJA = register_dataset(Dataset(
    name="small_parallel_enja",
    description="Tanaka-corpus English-Japanese pairs, tokenized: 50,000 train / 500 dev / 500 test",
    files={
        "train.en": "148b05dcd28638fe20ee84f2b1127001c80982be352007dda241fb759adadc76",
        "train.ja": "fc81a1434349ec98a449d7ae9cd2530057f689637684ecfed3501ea6a8a07ecc",
        "dev.en": "04a2673449770657fd5e3b963cb856be3130923212b6db8ac7eaeef18f06c041",
        "dev.ja": "cd534f56b8639dc130f86a365e5ec0aa70042000bdd740a622fbbf8b6be4acca",
        "test.en": "45edb380749ec2b49cca7618fc5a7595fc9f791180672ba466b90c873a4aa8bf",
        "test.ja": "d37dc460a81b064e4106c8913eb11fa300da05cf3f58a7a5bbfec7e20947ddef",
    },
    urls=("https://github.com/odashi/small_parallel_enja/archive/refs/heads/master.zip",),
    archive_prefix="small_parallel_enja-master",
    license="Tanaka Corpus / Tatoeba, CC-BY 2.0 FR",
    citation="Y. Matsumura (odashi), small_parallel_enja, https://github.com/odashi/small_parallel_enja; "
             "Y. Tanaka, Compilation of a multilingual parallel corpus, PACLING 2001.",
    fixture=lambda root: make_fixture(root),  # defined below
    max_extracted_bytes=16 << 20,  # the repository zip unpacks to 4.6 MB
))

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
Direction = Literal["en-ja", "ja-en"]
Pair = tuple[list[int], list[int]]


class Vocab:
    """Token <-> id table; ids 0-3 are the specials <pad> <bos> <eos> <unk>."""

    def __init__(self, itos: list[str]):
        if tuple(itos[:4]) != SPECIALS:
            raise ValueError(f"a Vocab must start with {SPECIALS}, got {itos[:4]}")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: list[str]) -> list[int]:
        """Token ids, unknown tokens -> UNK; no <bos> / <eos> added."""
        return [self.stoi.get(token, UNK) for token in tokens]

    def decode(self, ids) -> list[str]:
        """Tokens up to (not including) the first EOS; PAD and BOS are skipped."""
        tokens = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            tokens.append(self.itos[i])
        return tokens

    def to_json(self) -> list[str]:
        return list(self.itos)

    @classmethod
    def from_json(cls, itos: list[str]) -> Vocab:
        return cls(itos)


def build_vocab(sentences: list[list[str]], min_freq: int = 2) -> Vocab:
    """Specials, then tokens seen >= `min_freq` times, most frequent first (ties alphabetical)."""
    counts = collections.Counter(token for sentence in sentences for token in sentence)
    kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                  key=lambda t: (-counts[t], t))
    return Vocab(list(SPECIALS) + kept)


@dataclasses.dataclass
class ParallelData:
    """Id-encoded splits (lists of (src_ids, tgt_ids)) plus the raw reference tokens for BLEU."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    train: list[Pair]
    dev: list[Pair]
    test: list[Pair]
    dev_refs: list[list[str]]
    test_refs: list[list[str]]
    dev_src_tokens: list[list[str]]
    test_src_tokens: list[list[str]]
    direction: str = "en-ja"


def read_tokens(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def languages(direction: str) -> tuple[str, str]:
    if direction not in ("en-ja", "ja-en"):
        raise DojoError(f"unknown direction {direction!r}: use 'en-ja' or 'ja-en'.")
    src, tgt = direction.split("-")
    return src, tgt


def load(direction: Direction = "en-ja", min_freq: int = 2, max_train: int = 0,
         folder: Path | None = None) -> ParallelData:
    """Read, build vocabularies on the (possibly truncated) training set and encode every split.

    `max_train` > 0 keeps only the first N training pairs (vocabulary built from those).
    """
    src_lang, tgt_lang = languages(direction)
    folder = Path(folder) if folder is not None else locate("small_parallel_enja")
    splits = {}
    for split in ("train", "dev", "test"):
        src, tgt = read_tokens(folder / f"{split}.{src_lang}"), read_tokens(folder / f"{split}.{tgt_lang}")
        if len(src) != len(tgt):
            raise DojoError(f"{folder}/{split}.{src_lang} and .{tgt_lang} differ in length ({len(src)} vs "
                            f"{len(tgt)}); re-fetch the dataset.")
        if split == "train" and max_train:
            src, tgt = src[:max_train], tgt[:max_train]
        splits[split] = (src, tgt)
    src_vocab = build_vocab(splits["train"][0], min_freq)
    tgt_vocab = build_vocab(splits["train"][1], min_freq)

    def encode(split: str) -> list[Pair]:
        src, tgt = splits[split]
        return [(src_vocab.encode(s), tgt_vocab.encode(t)) for s, t in zip(src, tgt)]

    return ParallelData(src_vocab, tgt_vocab, encode("train"), encode("dev"), encode("test"),
                        dev_refs=splits["dev"][1], test_refs=splits["test"][1],
                        dev_src_tokens=splits["dev"][0], test_src_tokens=splits["test"][0], direction=direction)


def token_batches(pairs: list[Pair], max_tokens: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """Length-bucketed batches of indices into `pairs`.

    Sentences are sorted by (source length, target length) with random tie-breaking, cut greedily into
    batches whose padded size B * (max source length + max target length + 1) stays <= `max_tokens`
    (the +1 is <bos> / <eos>), and the batch order is shuffled. Deterministic given (seed, epoch);
    experiments pass `ctx.seed_for("batches")`, the run's named stream for batching.
    """
    if not pairs:
        return []
    rng = np.random.default_rng([seed, epoch])
    src_len = np.array([len(s) for s, _ in pairs])
    tgt_len = np.array([len(t) + 1 for _, t in pairs])
    tie = rng.random(len(pairs)) if shuffle else np.arange(len(pairs))
    order = np.lexsort((tie, tgt_len, src_len))
    batches: list[list[int]] = []
    current: list[int] = []
    max_src = max_tgt = 0
    for i in order:
        new_src, new_tgt = max(max_src, src_len[i]), max(max_tgt, tgt_len[i])
        if current and (len(current) + 1) * (new_src + new_tgt) > max_tokens:
            batches.append(current)
            current, new_src, new_tgt = [], src_len[i], tgt_len[i]
        current.append(int(i))
        max_src, max_tgt = new_src, new_tgt
    batches.append(current)
    if shuffle:
        batches = [batches[k] for k in rng.permutation(len(batches))]
    return batches


def collate(pairs: list[Pair], index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src (B,S), src_lengths (B,), tgt_in (B,T) = <bos>+tgt, tgt_out (B,T) = tgt+<eos>), PAD-padded."""
    batch = [pairs[i] for i in index]
    src_lengths = torch.tensor([max(len(s), 1) for s, _ in batch], dtype=torch.long)
    S = int(src_lengths.max())
    T = max(len(t) for _, t in batch) + 1
    src = torch.full((len(batch), S), PAD, dtype=torch.long)
    tgt_in = torch.full((len(batch), T), PAD, dtype=torch.long)
    tgt_out = torch.full((len(batch), T), PAD, dtype=torch.long)
    for b, (s, t) in enumerate(batch):
        if s:
            src[b, :len(s)] = torch.tensor(s)
        else:  # an empty source sentence becomes a single <unk> so that packed RNNs have length >= 1
            src[b, 0] = UNK
        tgt_in[b, :len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[b, :len(t) + 1] = torch.tensor(t + [EOS])
    return src, src_lengths, tgt_in, tgt_out


# ----- synthetic fixture: a tiny made-up language pair in the official file layout -----

_EN_JA_LEXICON = {
    "i": "私", "you": "あなた", "he": "彼", "she": "彼女", "we": "私 達", "they": "彼 ら",
    "tom": "トム", "mary": "メアリー", "the teacher": "先生", "my father": "父",
    "apples": "りんご", "books": "本", "tea": "お 茶", "music": "音楽", "dogs": "犬", "cats": "猫",
    "the piano": "ピアノ", "letters": "手紙", "english": "英語", "soccer": "サッカー",
    "like": "が 好き で す", "read": "を 読 み ま す", "drink": "を 飲 み ま す", "play": "を し ま す",
    "write": "を 書 き ま す", "study": "を 勉強 し ま す", "buy": "を 買 い ま す", "see": "を 見 ま す",
}


def make_fixture(root: Path, n_train: int = 600, n_dev: int = 40, n_test: int = 40, seed: int = 0) -> Path:
    """Subject-verb-object English sentences and their subject-object-verb 'Japanese' (made-up, tiny)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "small_parallel_enja"
    folder.mkdir(parents=True, exist_ok=True)
    subjects = ["i", "you", "he", "she", "we", "they", "tom", "mary", "the teacher", "my father"]
    objects = ["apples", "books", "tea", "music", "dogs", "cats", "the piano", "letters", "english", "soccer"]
    verbs = ["like", "read", "drink", "play", "write", "study", "buy", "see"]
    lex = _EN_JA_LEXICON

    def pair() -> tuple[str, str]:
        s, o, v = subjects[rng.integers(len(subjects))], objects[rng.integers(len(objects))], verbs[rng.integers(len(verbs))]
        en = f"{s} {v} {o} ."
        ja = f"{lex[s]} は {lex[o]} {lex[v]} 。"
        if rng.random() < 0.3:
            en = f"{s} often {v} {o} ."
            ja = f"{lex[s]} は よく {lex[o]} {lex[v]} 。"
        return en, ja

    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rows = [pair() for _ in range(n)]
        (folder / f"{split}.en").write_text("".join(en + "\n" for en, _ in rows), encoding="utf-8")
        (folder / f"{split}.ja").write_text("".join(ja + "\n" for _, ja in rows), encoding="utf-8")
    write_manifest(folder)
    return folder
