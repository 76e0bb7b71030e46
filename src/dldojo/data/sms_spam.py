"""SMS Spam Collection v.1 (Almeida, Gómez Hidalgo & Yamakami 2011): 5,574 English SMS, 4,827 ham / 747 spam.

File used: `SMSSpamCollection`, UTF-8, one message a line: the label `ham` or `spam`, a tab, the raw text.

There is no official split, so `split` makes a fixed stratified one (every class split on its own with
`numpy.random.default_rng(0)`): 20 % of each class is the test set (965 ham + 149 spam = 1,114 messages),
10 % of the rest the development set that chooses hyper-parameters (386 + 60 = 446), the remaining 4,014
(3,476 + 538) the training set. The collection holds exact duplicates (403 messages repeat an earlier one,
94 of them spam); they are kept as published, and the experiment reports how many test messages also occur
in its training set (123 of 1,114).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dldojo.data.store import Dataset, locate, register_dataset, write_manifest
from dldojo.engine.errors import DojoError

CLASSES = ("ham", "spam")
"""Label ids: 0 = ham (legitimate), 1 = spam."""
SPLIT_SEED = 0
TEST_FRACTION = 0.2
DEV_FRACTION = 0.1


@dataclasses.dataclass
class Messages:
    """Parallel lists: `texts[i]` and its label `labels[i]` (0 = ham, 1 = spam)."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray) -> Messages:
        return Messages([self.texts[i] for i in index], self.labels[index])


def read(path: Path) -> Messages:
    texts, labels = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in CLASSES:
            raise DojoError(f"{path}:{n}: expected 'ham<TAB>text' or 'spam<TAB>text', got {line[:60]!r}")
        texts.append(text)
        labels.append(CLASSES.index(label))
    return Messages(texts, np.array(labels, dtype=np.int64))


def load(folder: Path | None = None) -> Messages:
    folder = Path(folder) if folder is not None else locate("sms-spam")
    return read(folder / "SMSSpamCollection")


def split(data: Messages, test_fraction: float = TEST_FRACTION, dev_fraction: float = DEV_FRACTION,
          seed: int = SPLIT_SEED) -> tuple[Messages, Messages, Messages]:
    """(train, dev, test): per class, a `default_rng(seed)` permutation; its first `test_fraction` (rounded) is
    test, the first `dev_fraction` of the rest dev, the remainder train. Each part keeps the file order."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in range(len(CLASSES)):
        index = rng.permutation(np.flatnonzero(data.labels == label))
        n_test = int(round(len(index) * test_fraction))
        rest = index[n_test:]
        n_dev = int(round(len(rest) * dev_fraction))
        parts[0].extend(rest[n_dev:])
        parts[1].extend(rest[:n_dev])
        parts[2].extend(index[:n_test])
    train, dev, test = (data.subset(np.sort(np.array(p, dtype=np.int64))) for p in parts)
    return train, dev, test


HAM_WORDS = "ok see you later home tonight dinner love call me when lunch sorry late thanks".split()
SPAM_WORDS = "free win prize cash claim txt urgent now award call mobile reply stop £1000 guaranteed".split()


def make_fixture(root: Path, n_messages: int = 240, spam_share: float = 0.25, seed: int = 0) -> Path:
    """A tiny synthetic SMS collection in the official format: ham and spam drawn from two word lists that
    overlap in one word ('call'), so a classifier has something to learn; with its FIXTURE.json."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "sms-spam"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(n_messages):
        spam = rng.random() < spam_share
        words = rng.choice(SPAM_WORDS if spam else HAM_WORDS, size=int(rng.integers(3, 12)))
        text = " ".join(words).capitalize() + ("!" if spam else ".")
        lines.append(f"{'spam' if spam else 'ham'}\t{text}")
    (folder / "SMSSpamCollection").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_manifest(folder)
    return folder


SMS_SPAM = register_dataset(Dataset(
    name="sms-spam",
    description="SMS Spam Collection v.1: 5,574 SMS (4,827 ham / 747 spam)",
    files={"SMSSpamCollection": "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"},
    urls=("https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",),
    license="free for research use; cite Almeida, Gómez Hidalgo & Yamakami 2011",
    loader=load,
    citation="T. A. Almeida, J. M. Gómez Hidalgo, A. Yamakami. Contributions to the Study of SMS Spam Filtering: "
             "New Collection and Results. DocEng 2011.",
    fixture=make_fixture,
    max_extracted_bytes=4 << 20,  # the zip unpacks to about 0.5 MB
))
