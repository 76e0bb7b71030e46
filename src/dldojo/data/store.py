"""The offline data store: find a dataset, verify it, download it when possible, explain when not.

Search order for a dataset folder `<name>/`:
  1. every root listed in `DLDOJO_DATA` (separated by `:`), in order;
  2. the user cache, `$XDG_CACHE_HOME/dldojo` or `~/.cache/dldojo`.
If it is nowhere, the official archive is downloaded into the cache (with a progress bar), extracted
safely (no member may land outside the target folder) and verified. Offline, or with
`DLDOJO_OFFLINE=1`, the error names the dataset, every place searched and the URL to fetch.

Every registered file has a sha256 (or, where only the publisher's md5 is known, "md5:<hex>"); a
mismatch (corrupted or truncated file) is an error, never a warning, so no experiment trains on partial
data. Folders of thousands of images are checked by one digest of their whole tree (`tree_sha256`).
A dataset may have two layouts: the copy kept here and what its official download unpacks to
(`alt_files`, e.g. CIFAR-10 as a JPEG tarball here and as the official python pickles when
downloaded); either one verifying is enough. Folders made by `dldojo.data.fixtures` for tests carry a
`FIXTURE.json` manifest with their own hashes and are reported as synthetic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from dldojo.engine.errors import DojoError, did_you_mean

FIXTURE_MANIFEST = "FIXTURE.json"
DATASET_MODULES = ("dldojo.data.movielens", "dldojo.data.enja", "dldojo.data.images")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    """Folder name inside a data root, e.g. 'ml-100k'."""
    description: str
    files: dict[str, str]
    """Relative path -> sha256 (or "md5:<hex>") of every file the loaders read."""
    urls: tuple[str, ...]
    """Official download location(s) of the archive (or single file)."""
    license: str
    archive_prefix: str = ""
    """Folder inside the archive that becomes the dataset folder ('' = archive root)."""
    loader: Callable[..., Any] | None = None
    citation: str = ""
    file_urls: dict[str, str] = dataclasses.field(default_factory=dict)
    """Relative path -> URL, for datasets published as separate files (MNIST) instead of one archive."""
    alt_files: dict[str, str] = dataclasses.field(default_factory=dict)
    """A second accepted layout (what the official download unpacks to), relative path -> hash."""
    tree_sha256: dict[str, str] = dataclasses.field(default_factory=dict)
    """Sub-folder -> digest of its whole tree (see `tree_digest`), for folders of many small files."""
    manual_download: str = ""
    """Non-empty when no URL can be fetched without an account: how to get the files by hand."""


_DATASETS: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    _DATASETS[dataset.name] = dataset
    return dataset


def all_datasets() -> dict[str, Dataset]:
    import importlib

    for module in DATASET_MODULES:
        importlib.import_module(module)
    return dict(sorted(_DATASETS.items()))


def get_dataset(name: str) -> Dataset:
    datasets = all_datasets()
    if name not in datasets:
        raise DojoError(f"unknown dataset {name!r}.{did_you_mean(name, datasets)} See `dldojo data list`.")
    return datasets[name]


def data_roots() -> list[Path]:
    env = os.environ.get("DLDOJO_DATA", "")
    roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    return roots + [cache_root()]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dldojo"


def sha256_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_matches(path: Path, expected: str) -> tuple[bool, str]:
    """(ok, actual) for an expected "sha256hex" or "md5:hex"; the actual hash is written the same way."""
    algorithm, _, want = expected.rpartition(":")
    actual = sha256_of(path, algorithm or "sha256")
    return actual == want, (f"{algorithm}:" if algorithm else "") + actual


def tree_digest(folder: Path) -> str:
    """sha256 of the sorted lines "relative/path sha256-of-file" of every file under `folder`."""
    lines = sorted(f"{p.relative_to(folder).as_posix()} {sha256_of(p)}" for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclasses.dataclass
class Status:
    dataset: str
    state: str  # "ok", "fixture", "missing", "corrupt"
    path: Path | None
    detail: str = ""
    searched: tuple[Path, ...] = ()


def _problems(folder: Path, files: dict[str, str], trees: dict[str, str]) -> list[str]:
    problems = []
    for rel, expected in files.items():
        f = folder / rel
        if not f.exists():
            problems.append(f"{rel} is missing")
            continue
        ok, actual = file_matches(f, expected) if expected else (True, "")
        if not ok:
            kind = "sha256" if ":" not in expected else expected.split(":")[0]
            problems.append(f"{rel} has {kind} {actual.split(':')[-1][:12]}..., expected "
                            f"{expected.split(':')[-1][:12]}... (corrupted or truncated)")
    for rel, expected in trees.items():
        sub = folder / rel
        if not sub.is_dir():
            problems.append(f"{rel}/ is missing")
        elif tree_digest(sub) != expected:
            problems.append(f"{rel}/ does not match its registered tree digest (a file is missing, extra, "
                            "renamed or changed)")
    return problems


def check_folder(dataset: Dataset, folder: Path) -> Status:
    """Verify every registered file of `dataset` inside `folder` (or the fixture manifest).

    The folder verifies when its main layout (`files` + `tree_sha256`) does, or else its `alt_files`."""
    manifest = folder / FIXTURE_MANIFEST
    if manifest.exists():
        problems = _problems(folder, json.loads(manifest.read_text())["files"], {})
        return Status(dataset.name, "corrupt" if problems else "fixture", folder, "; ".join(problems))
    problems = _problems(folder, dataset.files, dataset.tree_sha256)
    if problems and dataset.alt_files:
        alt = _problems(folder, dataset.alt_files, {})
        if not alt:
            return Status(dataset.name, "ok", folder, "alternative layout")
        problems.append("nor does the alternative layout verify: " + "; ".join(alt))
    if problems:
        return Status(dataset.name, "corrupt", folder, "; ".join(problems))
    return Status(dataset.name, "ok", folder)


def status(name: str) -> Status:
    """Where the dataset is and whether it verifies; the first folder that exists wins."""
    dataset = get_dataset(name)
    roots = data_roots()
    for root in roots:
        folder = root / dataset.name
        if folder.is_dir():
            result = check_folder(dataset, folder)
            result.searched = tuple(roots)
            return result
    return Status(name, "missing", None, searched=tuple(r / dataset.name for r in roots))


def locate(name: str, download: bool = True) -> Path:
    """The verified folder of dataset `name`; downloads into the cache when missing and allowed."""
    result = status(name)
    dataset = get_dataset(name)
    if result.state in ("ok", "fixture"):
        return result.path  # type: ignore[return-value]
    if result.state == "corrupt":
        raise DojoError(
            f"dataset {name} at {result.path} failed verification: {result.detail}. Delete or replace that folder "
            f"(official files: {dataset.urls[0]}) and run `dldojo data verify {name}`."
        )
    offline = os.environ.get("DLDOJO_OFFLINE", "") not in ("", "0")
    errors: list[str] = []
    if download and not offline and not dataset.manual_download:
        for url in ("",) if dataset.file_urls else dataset.urls:  # "": fetch every `file_urls` entry
            try:
                return fetch(dataset, url)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                errors.append(f"{url or 'per-file download'}: {exc}")
    searched = "\n".join(f"  - {p}" for p in result.searched)
    why = "offline mode (DLDOJO_OFFLINE=1)" if offline else ("download failed: " + "; ".join(errors) if errors else "")
    if dataset.manual_download:
        how = dataset.manual_download
    elif dataset.file_urls:
        how = f"Fetch {', '.join(dataset.file_urls.values())} into a folder {dataset.name}/"
    else:
        how = f"Fetch {dataset.urls[0]} and extract it so that the folder {dataset.name}/ sits"
    raise DojoError(
        f"dataset {name} not found. Searched:\n{searched}\n{why}\n"
        f"{how} inside one of those places, or point DLDOJO_DATA at a folder that contains {dataset.name}/ "
        "(several roots: separate with ':')."
    )


def _download(url: str, target: Path, desc: str) -> None:
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.update(len(chunk))


def fetch(dataset: Dataset, url: str) -> Path:
    """Download `url` (or every `file_urls` entry) into the cache, extract safely, verify, move into place."""
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{dataset.name}-") as tmp:
        staged = Path(tmp) / "extracted"
        if dataset.file_urls:  # separate files (MNIST): each into place
            folder = staged
            for rel, file_url in dataset.file_urls.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                _download(file_url, folder / rel, f"download {dataset.name}/{rel}")
        else:
            archive = Path(tmp) / PurePosixPath(urllib.request.urlparse(url).path).name
            _download(url, archive, f"download {dataset.name}")
            if zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive):
                safe_extract(archive, staged)
                folder = staged / dataset.archive_prefix if dataset.archive_prefix else staged
            else:  # a single plain file
                folder = staged
                folder.mkdir()
                shutil.move(str(archive), folder / archive.name)
        result = check_folder(dataset, folder)
        if result.state != "ok":
            raise DojoError(f"downloaded {url or dataset.name} but it failed verification: {result.detail}")
        target = cache / dataset.name
        os.replace(folder, target)
    return target


def _check_member(name: str, dest: Path) -> Path:
    posix = PurePosixPath(name)
    target = (dest / posix).resolve()
    if posix.is_absolute() or ".." in posix.parts or not target.is_relative_to(dest.resolve()):
        raise DojoError(f"refusing to extract {name!r}: it would land outside {dest} (unsafe archive)")
    return target


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip or tar archive into `dest`, refusing absolute paths, '..', links and devices."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member(info.filename, dest)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DojoError(f"refusing to extract symlink {info.filename!r} (unsafe archive)")
            zf.extractall(dest)
        return
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for member in members:
            _check_member(member.name, dest)
            if not (member.isfile() or member.isdir()):
                raise DojoError(f"refusing to extract {member.name!r}: links and devices are not allowed")
        tf.extractall(dest, members=members, filter="data")
