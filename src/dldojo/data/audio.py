"""Audio datasets: the Free Spoken Digit Dataset (FSDD), read with the standard library's `wave` module.

    fsdd   Z. Jackson et al., Free Spoken Digit Dataset v1.0.10 (2020): 3,000 recordings of the digits 0–9 spoken
           in English by 6 speakers (george, jackson, lucas, nicolas, theo, yweweler), 50 of every digit per
           speaker; mono WAV, 8 kHz, 16-bit PCM, trimmed by the publisher to "near minimal silence at the
           beginnings and ends" (0.14–2.28 s, median 0.42 s).

Files: `recordings/{digit}_{speaker}_{index}.wav`. The official split (the dataset's README): recordings with
index 0–4 are the test set (300), 5–49 the training set (2,700). `load` returns both splits in the order
(index, digit, speaker), so the first n recordings of a split are as evenly spread over digits and speakers as
n allows (`AudioSplit.head`): the first 60 test recordings are index 0 of every digit and speaker.

Verification. 3,000 files are not listed one by one: like the flowers image folders, the folder `recordings/`
is checked by one digest of its whole tree (`store.tree_digest`: sha256 over the sorted lines "name sha256"),
so a missing, extra, renamed or changed recording fails it. The registered digest is that of the recordings/
folder of the tag v1.0.10; the copy kept here was compared file by file (git blob hashes) with that tag's tree
and is identical. The official download is GitHub's archive of the tag, which unpacks to
`free-spoken-digit-dataset-1.0.10/` (recordings/ and the publisher's scripts; only recordings/ is read).

Untrusted files. A WAV is parsed by `wave` and then checked: RIFF/WAVE PCM, one channel, 16-bit, 8,000 Hz, at
least one frame, at most `MAX_SECONDS`, and as many bytes of samples as its header declares; anything else is
a one-line DojoError naming the file (`read_wav`). Nothing is decoded by external programs.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import wave
from pathlib import Path

import numpy as np

from dldojo.data.store import Dataset, locate, register_dataset, write_manifest
from dldojo.engine.errors import DojoError

SAMPLE_RATE = 8000
MAX_SECONDS = 60.0  # FSDD's longest recording is 2.3 s; a header declaring more than this is refused unread
TEST_INDICES = range(0, 5)  # the README's split: index 0-4 test, 5-49 train
FSDD_VERSION = "1.0.10"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v{FSDD_VERSION}.tar.gz"
FILE_NAME = re.compile(r"^([0-9])_([a-z]+)_([0-9]+)\.wav$")

FSDD = register_dataset(Dataset(
    name="fsdd",
    description="Free Spoken Digit Dataset v1.0.10: 3,000 spoken digits (6 speakers x 10 digits x 50), "
                "mono 8 kHz 16-bit WAV; index 0-4 test, 5-49 train",
    files={},
    tree_sha256={"recordings": "3ee995d6778c7ff34ae05297eb4f0002f5097dec693dcf8735ec30e8d8146944"},
    urls=(FSDD_URL, "https://github.com/Jakobovski/free-spoken-digit-dataset"),
    archive_prefix=f"free-spoken-digit-dataset-{FSDD_VERSION}",
    license="CC BY-SA 4.0",
    citation="Z. Jackson et al., Free Spoken Digit Dataset (FSDD), v1.0.10, 2020, "
             "https://github.com/Jakobovski/free-spoken-digit-dataset (versions archived on Zenodo).",
    fixture=lambda root: make_fsdd_fixture(root),  # defined at the end
    max_extracted_bytes=64 << 20,  # the tag's tree is 21 MB
))


@dataclasses.dataclass
class AudioSplit:
    """One split: 16-bit PCM waveforms (a list of int16 arrays of different lengths), their digits, speakers,
    indices and file names, in (index, digit, speaker) order."""

    waveforms: list[np.ndarray]
    digits: np.ndarray
    speakers: tuple[str, ...]
    indices: np.ndarray
    names: tuple[str, ...]
    sample_rate: int = SAMPLE_RATE

    def __len__(self) -> int:
        return len(self.waveforms)

    def head(self, n: int) -> AudioSplit:
        """The first n recordings (all when n <= 0 or n >= len): evenly spread over digits and speakers."""
        if n <= 0 or n >= len(self):
            return self
        return AudioSplit(self.waveforms[:n], self.digits[:n], self.speakers[:n], self.indices[:n],
                          self.names[:n], self.sample_rate)


def read_wav(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The samples of a mono 16-bit PCM WAV at `sample_rate` Hz as int16; a one-line DojoError for anything else
    (not a WAV, compressed, stereo, another width or rate, empty, too long, truncated)."""
    path = Path(path)
    fix = "delete it and fetch the dataset again (`dldojo data verify fsdd` checks the folder)"
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            channels, width, rate, frames = wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()
            if (channels, width, rate) != (1, 2, sample_rate):
                raise DojoError(f"{path}: {channels} channel(s), {8 * width}-bit, {rate} Hz; expected mono 16-bit "
                                f"PCM at {sample_rate} Hz; {fix}")
            if not 0 < frames <= MAX_SECONDS * sample_rate or 2 * frames > size:
                raise DojoError(f"{path}: its header declares {frames} frames in a file of {size} bytes (empty, "
                                f"truncated or over {MAX_SECONDS:g} s); {fix}")
            data = wav.readframes(frames)
    except (wave.Error, EOFError, struct.error, ValueError) as exc:
        raise DojoError(f"{path} is not a readable PCM WAV file ({exc or type(exc).__name__}); {fix}") from None
    except OSError as exc:
        raise DojoError(f"cannot read {path} ({exc.strerror or exc}); check its permissions, or {fix}") from None
    if len(data) != 2 * frames:
        raise DojoError(f"{path}: {len(data) // 2} of the {frames} frames its header declares are there "
                        f"(truncated); {fix}")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def read_fsdd(folder: Path) -> tuple[AudioSplit, AudioSplit]:
    """(train, test) from `folder/recordings/`: every `{digit}_{speaker}_{index}.wav`, by the official split."""
    records = []
    for path in (folder / "recordings").iterdir():
        if path.suffix.lower() != ".wav":
            continue
        match = FILE_NAME.match(path.name)
        if match is None:
            raise DojoError(f"{path}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav); remove the file "
                            "or fetch the dataset again")
        digit, speaker, index = int(match.group(1)), match.group(2), int(match.group(3))
        records.append((index, digit, speaker, path))
    records.sort(key=lambda r: r[:3])
    splits = []
    for test in (False, True):
        chosen = [r for r in records if (r[0] in TEST_INDICES) == test]
        if not chosen:
            raise DojoError(f"{folder / 'recordings'} holds no {'test (index 0-4)' if test else 'training'} "
                            "recordings; fetch the dataset again")
        splits.append(AudioSplit([read_wav(p) for *_, p in chosen], np.array([r[1] for r in chosen], dtype=np.int64),
                                 tuple(r[2] for r in chosen), np.array([r[0] for r in chosen], dtype=np.int64),
                                 tuple(p.name for *_, p in chosen)))
    return splits[0], splits[1]


def load(name: str = "fsdd") -> tuple[AudioSplit, AudioSplit]:
    """(train, test) of an audio dataset; only 'fsdd' so far."""
    if name != "fsdd":
        raise DojoError(f"no audio loader for dataset {name!r}; audio datasets: fsdd")
    return read_fsdd(locate("fsdd"))


def write_wav_int16(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write int16 samples as a mono 16-bit PCM WAV (for fixtures and tests)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())


# ----- a tiny synthetic copy in the real layout (tests without the real data) -----

def make_fsdd_fixture(root: Path, speakers: tuple[str, ...] = ("alice", "bob"), indices: tuple[int, ...] = (0, 5, 6),
                      seed: int = 0) -> Path:
    """`fsdd/recordings/{digit}_{speaker}_{index}.wav`: 0.15–0.25 s "words" whose pitch depends on the digit
    (a decaying harmonic tone with an onset, plus a little noise), learnable in a few steps."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "fsdd"
    (folder / "recordings").mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for s, speaker in enumerate(speakers):
            for index in indices:
                n = int(rng.integers(1200, 2000))
                t = np.arange(n) / SAMPLE_RATE
                pitch = 150.0 + 40.0 * digit + 20.0 * s
                envelope = np.minimum(1.0, t / 0.02) * np.exp(-3.0 * t)
                tone = np.sin(2 * np.pi * pitch * t) + 0.4 * np.sin(2 * np.pi * 2 * pitch * t)
                samples = 9000.0 * envelope * tone + rng.normal(0.0, 60.0, n)
                write_wav_int16(folder / "recordings" / f"{digit}_{speaker}_{index}.wav",
                                np.clip(samples, -32768, 32767).astype(np.int16))
    write_manifest(folder)
    return folder
