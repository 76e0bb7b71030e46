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
downloaded); either one verifying is enough. Where the publisher documents the archive's own sha256
(`download_sha256`), the download is checked against it before extraction.

Untrusted input. A data folder may come from anyone, so nothing in it is believed on its word:
  * Test fixtures. Folders written by a dataset's `fixture` function (tiny synthetic copies, see
    `dldojo.data.fixtures`) carry a `FIXTURE.json` listing their own hashes. Such a manifest vouches for
    itself, so it is honoured only when the environment says so: `DLDOJO_ALLOW_FIXTURES=1` (the test
    suite sets it). Otherwise the folder is checked against the registered checksums like any other, and
    fails with a note saying what the manifest is.
  * Files are parsed, never executed: pickles go through `dldojo.data.safe_pickle`.
  * Archives are extracted only inside their target folder (no absolute paths, `..`, links or devices)
    and only up to the dataset's `max_extracted_bytes` (checked against the sizes the archive declares,
    before anything is written); downloads are capped the same way.
  * An unreadable folder or file is reported as such ("unreadable"), with the path and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from dldojo.engine.errors import DojoError, did_you_mean

FIXTURE_MANIFEST = "FIXTURE.json"
FIXTURES_ENV = "DLDOJO_ALLOW_FIXTURES"
DEFAULT_MAX_EXTRACTED_BYTES = 1 << 30


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
    fixture: Callable[[Path], Path] | None = None
    """`fixture(root)` writes a tiny synthetic copy into `root/<name>/` (with its FIXTURE.json) for tests."""
    max_extracted_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES
    """Cap on what the official download may weigh and unpack to (declare about twice the real size)."""
    download_sha256: dict[str, str] = dataclasses.field(default_factory=dict)
    """URL -> sha256 of the downloaded archive itself, where its publisher documents one: checked before
    anything is extracted (for a layout whose files have no registered hashes of their own)."""


_DATASETS: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> Dataset:
    _DATASETS[dataset.name] = dataset
    return dataset


def all_datasets() -> dict[str, Dataset]:
    """Every registered dataset: the modules the families declare (`Family.datasets`) register theirs."""
    from dldojo.engine.family import import_modules

    import_modules("datasets")
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
    """sha256 of the sorted lines "relative/path sha256-of-file" of every file under `folder`.

    A sub-folder that cannot be listed raises (PermissionError), rather than being skipped silently."""
    def fail(exc: OSError) -> None:
        raise exc

    paths = [Path(top) / f for top, _, names in os.walk(folder, onerror=fail) for f in names]
    lines = sorted(f"{p.relative_to(folder).as_posix()} {sha256_of(p)}" for p in paths if p.is_file())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def fixtures_allowed() -> bool:
    """True when FIXTURE.json manifests may be honoured: only with DLDOJO_ALLOW_FIXTURES=1 (tests)."""
    return os.environ.get(FIXTURES_ENV, "") == "1"


def is_fixture(folder: Path) -> bool:
    """A folder that counts as a synthetic test fixture: it has a FIXTURE.json and fixtures are allowed."""
    return fixtures_allowed() and (Path(folder) / FIXTURE_MANIFEST).exists()


def write_manifest(folder: Path) -> None:
    """Write `folder`'s FIXTURE.json: the sha256 of every file under it (fixture writers call this last)."""
    files = {p.relative_to(folder).as_posix(): sha256_of(p) for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != FIXTURE_MANIFEST}
    (folder / FIXTURE_MANIFEST).write_text(json.dumps({"synthetic": True, "files": files}, indent=1))


def _manifest_files(manifest: Path) -> dict[str, str] | None:
    """The {relative path: sha256} of a FIXTURE.json, or None when it is not one (or names outside paths)."""
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v)
            and not PurePosixPath(k).is_absolute() and ".." not in PurePosixPath(k).parts
            for k, v in files.items()):
        return None
    return files


@dataclasses.dataclass
class Status:
    dataset: str
    state: str  # "ok", "fixture", "missing", "corrupt", "unreadable"
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
    """Verify every registered file of `dataset` inside `folder` (or, when allowed, the fixture manifest).

    The folder verifies when its main layout (`files` + `tree_sha256`) does, or else its `alt_files`.
    A folder or file that cannot be read gives the state "unreadable" (with the path), not an exception."""
    try:
        return _check_folder(dataset, folder)
    except OSError as exc:
        return Status(dataset.name, "unreadable", folder, _unreadable(exc, folder))


def _unreadable(exc: OSError, folder: Path) -> str:
    """'cannot read <what> (<why>); <fix>', naming the folder that blocks the way when it is not the file."""
    path = Path(exc.filename) if exc.filename else folder
    blocked = next((p for p in reversed(path.parents) if not os.access(p, os.X_OK)), path)
    above = blocked != folder and folder.is_relative_to(blocked)
    fix = f"chmod a+rX {blocked}" if above else f"chmod -R a+rX {folder}"
    return f"cannot read {blocked} ({exc.strerror or exc}); give this user read access (e.g. `{fix}`)"


def _check_folder(dataset: Dataset, folder: Path) -> Status:
    manifest = folder / FIXTURE_MANIFEST
    note = ""
    if manifest.exists():
        if fixtures_allowed():
            files = _manifest_files(manifest)
            if files is None:
                return Status(dataset.name, "corrupt", folder, f"{FIXTURE_MANIFEST} is not a fixture manifest")
            problems = _problems(folder, files, {})
            return Status(dataset.name, "corrupt" if problems else "fixture", folder, "; ".join(problems))
        note = (f" ({FIXTURE_MANIFEST} marks this folder as synthetic test data, which is used only when "
                f"{FIXTURES_ENV}=1, as in the test suite)")
    problems = _problems(folder, dataset.files, dataset.tree_sha256)
    if problems and dataset.alt_files:
        alt = _problems(folder, dataset.alt_files, {})
        if not alt:
            return Status(dataset.name, "ok", folder, "alternative layout")
        problems.append("nor does the alternative layout verify: " + "; ".join(alt))
    if problems:
        return Status(dataset.name, "corrupt", folder, "; ".join(problems) + note)
    return Status(dataset.name, "ok", folder)


def status(name: str) -> Status:
    """Where the dataset is and whether it verifies; the first folder that exists wins."""
    dataset = get_dataset(name)
    roots = data_roots()
    for root in roots:
        folder = root / dataset.name
        try:
            found = folder.is_dir()
        except OSError as exc:  # the root itself cannot be searched
            return Status(name, "unreadable", folder, _unreadable(exc, folder), tuple(roots))
        if found:
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
    if result.state == "unreadable":
        raise DojoError(f"dataset {name}: {result.detail}, or point DLDOJO_DATA at a readable copy.")
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


def _download(url: str, target: Path, desc: str, max_bytes: int) -> int:
    """Fetch `url` into `target`; refuse (DojoError) past `max_bytes`. Returns the number of bytes."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        if total and total > max_bytes:
            raise DojoError(_too_big(url, total, max_bytes))
        done = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc) as bar:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                done += len(chunk)
                if done > max_bytes:
                    raise DojoError(_too_big(url, done, max_bytes))
                out.write(chunk)
                bar.update(len(chunk))
    return done


def _too_big(what: object, size: int, max_bytes: int) -> str:
    return (f"{what} would take {size / 2**20:,.1f} MiB or more, over the {max_bytes / 2**20:,.1f} MiB cap this "
            "dataset declares (max_extracted_bytes); refusing it (a wrong URL, a changed upstream file or an "
            "archive bomb). Check the source, or raise the dataset's max_extracted_bytes if it really grew.")


def fetch(dataset: Dataset, url: str) -> Path:
    """Download `url` (or every `file_urls` entry) into the cache, extract safely, verify, move into place."""
    cache = cache_root()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{dataset.name}-") as tmp:
        staged = Path(tmp) / "extracted"
        budget = dataset.max_extracted_bytes
        if dataset.file_urls:  # separate files (MNIST): each into place
            folder = staged
            for rel, file_url in dataset.file_urls.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                budget -= _download(file_url, folder / rel, f"download {dataset.name}/{rel}", budget)
        else:
            archive = Path(tmp) / PurePosixPath(urllib.request.urlparse(url).path).name
            _download(url, archive, f"download {dataset.name}", budget)
            if url in dataset.download_sha256:
                ok, actual = file_matches(archive, dataset.download_sha256[url])
                if not ok:
                    raise DojoError(f"downloaded {url} but it has sha256 {actual[:12]}..., expected "
                                    f"{dataset.download_sha256[url][:12]}... (a damaged download or a changed "
                                    "upstream file); nothing was extracted")
            if zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive):
                safe_extract(archive, staged, budget)
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


def safe_extract(archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES) -> None:
    """Extract a zip or tar archive into `dest`, refusing absolute paths, '..', links and devices, and
    archives whose members add up to more than `max_bytes`.

    Every member is checked before anything is written. The sizes checked are those the archive
    declares, which bound what is written: tarfile copies exactly the declared size, zipfile stops at
    it. A tar header is checked as soon as it is read, so a compressed bomb is refused without
    decompressing its body."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                total = 0
                for info in zf.infolist():
                    _check_member(info.filename, dest)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DojoError(f"refusing to extract symlink {info.filename!r} (unsafe archive)")
                    total += info.file_size
                    if total > max_bytes:
                        raise DojoError(_too_big(archive, total, max_bytes))
                zf.extractall(dest)
            return
        with tarfile.open(archive) as tf:
            members, total = [], 0
            for member in tf:  # lazily: each header is checked before the next one is read
                _check_member(member.name, dest)
                if not (member.isfile() or member.isdir()):
                    raise DojoError(f"refusing to extract {member.name!r}: links and devices are not allowed")
                total += member.size
                if total > max_bytes:
                    raise DojoError(_too_big(archive, total, max_bytes))
                members.append(member)
            tf.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise DojoError(f"{archive} is a damaged archive ({exc}); delete it and download it again.") from None


def plural(n: int, noun: str) -> str:
    """'1 file', '4,317 files'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size / 1e3:,.1f} kB"


def what_was_checked(result: Status) -> str:
    """What verifying `result` (a folder that passed) hashed, for `dldojo data verify`: the files (or the
    folders checked as a whole), their total size, the hash and what it matched."""
    dataset, folder = get_dataset(result.dataset), Path(result.path)
    if result.state == "fixture":
        files, trees, against = _manifest_files(folder / FIXTURE_MANIFEST) or {}, {}, f"its own {FIXTURE_MANIFEST}"
    elif result.detail == "alternative layout":
        files, trees, against = dataset.alt_files, {}, "the registered checksums of the official download's layout"
    else:
        files, trees = dataset.files, dataset.tree_sha256
        against = " and ".join(what for what, present in (("the registered checksums", files),
                                                           ("the registered folder digests", trees)) if present)
    parts, size = [], sum((folder / rel).stat().st_size for rel in files)
    if files:
        names = ", ".join(list(files)[:3]) + (", ..." if len(files) > 3 else "")
        parts.append(f"{plural(len(files), 'file')} ({names})")
    if trees:
        under = [Path(top) / f for rel in trees for top, _, names in os.walk(folder / rel) for f in names]
        size += sum(p.stat().st_size for p in under)
        parts.append(f"{plural(len(under), 'file')} in {plural(len(trees), 'folder')} "
                     f"({', '.join(f'{rel}/' for rel in trees)})")
    if not parts:
        return "nothing is registered to check"
    kinds = sorted({expected.rpartition(":")[0] or "sha256" for expected in files.values()}
                   | ({"sha256"} if trees else set()))
    agree = "it matches" if len(files) + len(trees) == 1 and not trees else "all match"
    return f"{' and '.join(parts)}, {megabytes(size)} hashed with {'/'.join(kinds)}: {agree} {against}"
