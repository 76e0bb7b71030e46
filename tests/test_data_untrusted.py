"""A data folder is untrusted input: probed as an attacker and as an unlucky user would (issue 17).

Nothing in a folder is executed (a real malicious pickle), a FIXTURE.json never vouches for itself,
an unreadable folder or file is a one-line error (with the root permission override really dropped),
and no archive unpacks past the size its dataset declares (a real 1 MB tar.gz that expands to 1 GiB).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dldojo.data import images, movielens, safe_pickle, store
from dldojo.engine.errors import DojoError

CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


class ShellPayload:
    """What an attacker puts in a data file: unpickling it runs a shell command (here: creates a file)."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from dldojo.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ code execution from a dataset folder

@pytest.fixture
def malicious_cifar(tmp_path, monkeypatch) -> Path:
    """The probe of issue 17.1: six `data_batch_*` / `test_batch` pickles whose __reduce__ runs a shell command,
    no JPEG tarball, and a FIXTURE.json listing their own sha256s. Returns the file the payload would create."""
    control = tmp_path / "control-pwned"
    pickle.loads(pickle.dumps(ShellPayload(control)))  # the payload is real: plain pickle runs it
    assert control.exists()
    target = tmp_path / "pwned"
    folder = tmp_path / "root" / "cifar10"
    folder.mkdir(parents=True)
    for name in CIFAR_BATCHES:  # a real batch dict with the payload hidden among its entries
        (folder / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), b"labels": [0],
                                                  b"data": ShellPayload(target)}))
    store.write_manifest(folder)
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "root"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    monkeypatch.delenv(store.FIXTURES_ENV, raising=False)
    return target


def test_malicious_pickles_with_a_self_listing_manifest_are_refused(malicious_cifar, capsys):
    code, out, err = _cli(capsys, "data", "verify", "cifar10")
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: dataset cifar10 at ") and "failed verification" in err
    assert "data_batch_1 has md5" in err and "DLDOJO_ALLOW_FIXTURES" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = _cli(capsys, "data", "list")
    assert code == 0 and "cifar10" in out and "corrupt" in out
    with pytest.raises(DojoError, match="failed verification"):
        images.load("cifar10")
    assert not malicious_cifar.exists()


def test_malicious_pickles_do_not_run_even_where_fixtures_are_allowed(malicious_cifar, monkeypatch):
    """With fixtures allowed (as in the test suite) the manifest is honoured, and still nothing runs: the
    batches are read by the restricted unpickler, which resolves no global but NumPy's array pieces."""
    monkeypatch.setenv(store.FIXTURES_ENV, "1")
    assert store.status("cifar10").state == "fixture"
    with pytest.raises(DojoError, match=r"data_batch_1 is not a plain data pickle \(it names posix.system"):
        images.load("cifar10")
    assert not malicious_cifar.exists()


@pytest.mark.parametrize("payload", [
    "shell", "eval", "object-array", "masked-array", "structured", "short-data", "set", "persistent-id"])
def test_safe_pickle_refuses_anything_but_plain_data(payload, tmp_path):
    target = tmp_path / "pwned"
    obj = {
        "shell": lambda: [1, ShellPayload(target)],
        "eval": lambda: EvalPayload(),
        "object-array": lambda: np.array([1, "a"], dtype=object),
        "masked-array": lambda: np.ma.masked_array([1, 2], mask=[0, 1]),
        "structured": lambda: np.zeros(2, dtype=[("a", "u1"), ("b", "f4")]),
        "short-data": lambda: None,
        "set": lambda: {1, 2},
        "persistent-id": lambda: None,
    }[payload]()
    if payload == "short-data":  # an array whose bytes do not fill its declared shape
        data = pickle.dumps(np.zeros((4, 4), np.uint8), protocol=4)
        assert data.count(pickle.SHORT_BINBYTES + b"\x10" + bytes(16)) == 1
        data = data.replace(pickle.SHORT_BINBYTES + b"\x10" + bytes(16), pickle.SHORT_BINBYTES + b"\x08" + bytes(8))
    elif payload == "persistent-id":  # PROTO 2, BINUNICODE 'x', BINPERSID, STOP
        data = b"\x80\x02X\x01\x00\x00\x00xQ."
    else:
        data = pickle.dumps(obj, protocol=4)
    with pytest.raises(DojoError, match="is not a plain data pickle"):
        safe_pickle.loads(data, source="batch")
    assert not target.exists()


class EvalPayload:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def test_safe_pickle_reads_plain_data_and_numeric_arrays():
    value = {b"a": [1, 2.5, None, True, "x", (b"y",)], "m": np.arange(6, dtype="<i4").reshape(2, 3),
             "f": np.asfortranarray(np.ones((2, 3), ">f8"))}
    back = safe_pickle.loads(pickle.dumps(value, protocol=4))
    assert back[b"a"] == value[b"a"]
    for key in ("m", "f"):
        assert back[key].dtype == value[key].dtype and np.array_equal(back[key], value[key])


# ------------------------------------------------------------------ unreadable folders and files

@pytest.fixture
def public_tmp():
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="dldojo-perm-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for p in [base, *base.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(base)


def _unprivileged() -> list[str]:
    """The command prefix that drops root's permission override (root reads a chmod 000 file anyway).

    The process stays uid 0 (so it can still run this checkout's Python, wherever the clone is) but loses
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding set: file modes then apply to it."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("tests run as root, which reads any file, and setpriv is not installed to drop the override")
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


def _run(prefix: list[str], base: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "DLDOJO_DATA": str(base / "data"),
           "XDG_CACHE_HOME": str(base / "cache"), "DLDOJO_OFFLINE": "1", store.FIXTURES_ENV: "1"}
    return subprocess.run([*prefix, sys.executable, *argv], env=env, cwd=base, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("what", ["dataset folder", "file", "data root"])
def test_unreadable_dataset_is_a_one_line_error(what, public_tmp):
    prefix = _unprivileged()
    folder = movielens.make_fixture(public_tmp / "data")
    victim = {"dataset folder": folder, "file": folder / "u.data", "data root": folder.parent}[what]
    victim.chmod(0)
    probe = _run(prefix, public_tmp, "-c", "import os, sys; import dldojo.data.store; "
                                           "print(os.access(sys.argv[1], os.R_OK))", str(victim))
    if probe.returncode != 0:
        pytest.skip(f"the unprivileged user cannot run this Python: {probe.stderr.strip()[-200:]}")
    assert probe.stdout.strip() == "False", "the permission override was not dropped"
    child = _run(prefix, public_tmp, "-c", CLI_CHILD)  # `dldojo data verify ml-100k`, `dldojo data list`
    assert child.returncode == 0, child.stderr
    results = json.loads(child.stdout)
    code, _, err = results["verify"]
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"cannot read {victim} (Permission denied)" in err
    fix = f"chmod a+rX {victim}" if what == "data root" else f"chmod -R a+rX {folder}"
    assert f"give this user read access (e.g. `{fix}`), or point DLDOJO_DATA at a readable copy" in err
    code, out, err = results["list"]
    assert code == 0 and any(line.startswith("ml-100k") and "unreadable" in line for line in out.splitlines()), err


CLI_CHILD = """
import contextlib, io, json
from dldojo.cli import main
results = {}
for name, argv in (("verify", ["data", "verify", "ml-100k"]), ("list", ["data", "list"])):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results[name] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


# ------------------------------------------------------------------ extraction size cap

def _zero_bomb(path: Path, size: int = 1 << 30) -> Path:
    """A .tar.gz of ~1 MB holding one member of `size` zero bytes, made without writing `size` bytes: gzip
    members concatenate, so one compressed MiB of zeros is repeated."""
    info = tarfile.TarInfo("toy-bomb/zeros.bin")
    info.size, info.mtime = size, 0
    mib = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    with open(path, "wb") as out:
        out.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT), mtime=0))
        for _ in range(size >> 20):
            out.write(mib)
        out.write(gzip.compress(bytes(1024), mtime=0))  # end-of-archive blocks
    return path


def test_bomb_is_a_real_tar_gz_of_a_gibibyte(tmp_path):
    bomb = _zero_bomb(tmp_path / "bomb.tar.gz")
    assert bomb.stat().st_size < 1.2e6 and tarfile.is_tarfile(bomb)
    with tarfile.open(bomb) as tf:
        first = tf.next()
        assert (first.name, first.size) == ("toy-bomb/zeros.bin", 1 << 30)
        assert tf.extractfile(first).read(1 << 16) == bytes(1 << 16)


def test_extraction_stops_at_the_declared_size(tmp_path):
    bomb = _zero_bomb(tmp_path / "bomb.tar.gz")
    with pytest.raises(DojoError, match=r"would take 1,024.0 MiB or more, over the 64.0 MiB cap"):
        store.safe_extract(bomb, tmp_path / "out", max_bytes=64 << 20)
    assert list((tmp_path / "out").iterdir()) == []  # nothing written
    zipped = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for k in range(3):
            zf.writestr(f"toy/zeros{k}.bin", bytes(8 << 20))
    assert zipped.stat().st_size < 200_000
    with pytest.raises(DojoError, match="max_extracted_bytes"):
        store.safe_extract(zipped, tmp_path / "out", max_bytes=16 << 20)
    assert list((tmp_path / "out").iterdir()) == []
    store.safe_extract(zipped, tmp_path / "ok", max_bytes=32 << 20)  # within the cap: extracted
    assert (tmp_path / "ok" / "toy" / "zeros2.bin").stat().st_size == 8 << 20


def test_download_of_a_bomb_leaves_nothing_behind(tmp_path, monkeypatch):
    """The whole online path (file:// URL): download -> refuse at the first header -> nothing in the cache."""
    bomb = _zero_bomb(tmp_path / "toy-bomb.tar.gz")
    dataset = store.register_dataset(store.Dataset(
        name="toy-bomb", description="test", files={"zeros.bin": "0" * 64}, urls=(bomb.as_uri(),), license="test",
        archive_prefix="toy-bomb", max_extracted_bytes=64 << 20))
    try:
        monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "empty"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv("DLDOJO_OFFLINE", raising=False)
        with pytest.raises(DojoError, match="over the 64.0 MiB cap this dataset declares"):
            store.locate("toy-bomb")
        assert list((tmp_path / "cache" / "dldojo").iterdir()) == []
        small = dataclasses.replace(dataset, max_extracted_bytes=256 << 10)  # the download itself is capped too
        monkeypatch.setitem(store._DATASETS, "toy-bomb", small)
        with pytest.raises(DojoError, match=r"toy-bomb.tar.gz would take 1.\d MiB or more, over the 0.2 MiB cap"):
            store.locate("toy-bomb")
        assert list((tmp_path / "cache" / "dldojo").iterdir()) == []
    finally:
        store._DATASETS.pop(dataset.name)


def test_every_registered_dataset_declares_its_size():
    for name, dataset in store.all_datasets().items():
        if dataset.urls and not dataset.manual_download:
            assert dataset.max_extracted_bytes < store.DEFAULT_MAX_EXTRACTED_BYTES, name


def test_damaged_archive_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("x/a.bin")
        info.size = 100_000
        tf.addfile(info, io.BytesIO(os.urandom(100_000)))
    broken.write_bytes(buf.getvalue()[:-5000])
    with pytest.raises(DojoError, match="is a damaged archive"):
        store.safe_extract(broken, tmp_path / "out")
