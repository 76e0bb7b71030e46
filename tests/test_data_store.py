"""Offline data store: search order, checksums, fixtures, offline errors, safe extraction, download from a URL."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile

import pytest

from dldojo.data import fixtures, movielens, store
from dldojo.engine.errors import DojoError

make_movielens = movielens.make_fixture


@pytest.fixture
def allow_fixtures(monkeypatch):
    monkeypatch.setenv(store.FIXTURES_ENV, "1")


def test_synthetic_fixture_verifies_and_loads(synthetic_data):
    assert store.status("ml-100k").state == "fixture"
    data = movielens.load()
    assert data.titles[0] == "Café Müller (1995)"  # u.item is Latin-1
    train, test = movielens.split(data, "u1")
    assert len(train) + len(test) == len(data.ratings)


def test_fixture_manifest_counts_only_when_fixtures_are_allowed(tmp_path, monkeypatch):
    """A FIXTURE.json lists its own hashes, so it proves nothing: without DLDOJO_ALLOW_FIXTURES=1 the folder
    is checked against the registered checksums, fails, and the message says what the manifest is."""
    make_movielens(tmp_path)
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    monkeypatch.delenv(store.FIXTURES_ENV, raising=False)
    st = store.status("ml-100k")
    assert st.state == "corrupt" and "u.data has sha256" in st.detail and store.FIXTURES_ENV in st.detail
    with pytest.raises(DojoError, match="failed verification"):
        movielens.load()
    monkeypatch.setenv(store.FIXTURES_ENV, "0")
    assert store.status("ml-100k").state == "corrupt"
    monkeypatch.setenv(store.FIXTURES_ENV, "1")
    assert store.status("ml-100k").state == "fixture"


def test_fixture_manifest_naming_outside_files_is_refused(tmp_path, monkeypatch, allow_fixtures):
    folder = make_movielens(tmp_path)
    (folder / store.FIXTURE_MANIFEST).write_text('{"files": {"../../etc/passwd": "%s"}}' % ("0" * 64))
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    st = store.status("ml-100k")
    assert st.state == "corrupt" and "not a fixture manifest" in st.detail


def test_fixtures_are_derived_from_the_registered_datasets(tmp_path):
    writers = fixtures.FIXTURES
    assert {"ml-100k", "small_parallel_enja", "mnist", "fashion-mnist", "cifar10", "flowers", "tf_flowers"} <= set(writers)
    assert all(store.get_dataset(name).fixture is writer for name, writer in writers.items())
    assert fixtures.make_all(tmp_path, ["ml-100k"]) == tmp_path
    assert (tmp_path / "ml-100k" / store.FIXTURE_MANIFEST).exists()
    with pytest.raises(DojoError, match="no synthetic fixture for dataset 'ml100k'"):
        fixtures.make_all(tmp_path, ["ml100k"])


def test_search_order_first_root_wins(tmp_path, monkeypatch, allow_fixtures):
    first, second = make_movielens(tmp_path / "a", seed=1).parent, make_movielens(tmp_path / "b", seed=2).parent
    monkeypatch.setenv("DLDOJO_DATA", f"{first}:{second}")
    assert store.locate("ml-100k") == first / "ml-100k"
    monkeypatch.setenv("DLDOJO_DATA", f"{tmp_path / 'nowhere'}:{second}")
    assert store.locate("ml-100k") == second / "ml-100k"


def test_checksum_mismatch_is_an_error(tmp_path, monkeypatch, allow_fixtures):
    folder = make_movielens(tmp_path)
    with open(folder / "u.data", "a") as fh:  # a corrupted / appended file
        fh.write("1\t1\t5\t0\n")
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    with pytest.raises(DojoError, match=r"failed verification: u.data has sha256"):
        store.locate("ml-100k")


def test_real_registration_rejects_a_truncated_copy(tmp_path, monkeypatch):
    folder = make_movielens(tmp_path)
    (folder / store.FIXTURE_MANIFEST).unlink()  # now it claims to be the real dataset
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    st = store.status("ml-100k")
    assert st.state == "corrupt" and "u.data has sha256" in st.detail


def test_missing_and_offline_names_places_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    with pytest.raises(DojoError) as err:
        store.locate("ml-100k")
    message = str(err.value)
    assert "ml-100k not found" in message
    assert str(tmp_path / "empty" / "ml-100k") in message and str(tmp_path / "cache" / "dldojo") in message
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message


def test_unknown_dataset_suggests():
    with pytest.raises(DojoError, match="Did you mean 'ml-100k'"):
        store.get_dataset("ml100k")


def _zip_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"])
def test_unsafe_zip_member_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_with({"fine.txt": b"x", member: b"pwned"}))
    with pytest.raises(DojoError, match="unsafe archive"):
        store.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "fine.txt").exists()  # nothing is extracted from a bad archive


def test_tar_symlink_is_refused(tmp_path):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DojoError, match="links and devices"):
        store.safe_extract(archive, tmp_path / "out")


def test_download_extract_verify_from_url(tmp_path, monkeypatch):
    """The online path, exercised with a file:// URL: download -> safe extract -> verify -> cache."""
    source = make_movielens(tmp_path / "src")
    files = {p.name: store.sha256_of(p) for p in source.iterdir() if p.name != store.FIXTURE_MANIFEST}
    archive = tmp_path / "toy-ml.zip"
    archive.write_bytes(_zip_with({f"toy-ml/{n}": (source / n).read_bytes() for n in files}))
    dataset = store.register_dataset(store.Dataset(
        name="toy-ml", description="test", files=files, urls=(archive.as_uri(),), license="test",
        archive_prefix="toy-ml"))
    try:
        monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "empty"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv("DLDOJO_OFFLINE", raising=False)
        folder = store.locate("toy-ml")
        assert folder == tmp_path / "cache" / "dldojo" / "toy-ml"
        assert store.status("toy-ml").state == "ok"
        # a corrupted download is rejected and leaves nothing in the cache
        shutil.rmtree(folder)
        archive.write_bytes(_zip_with({f"toy-ml/{n}": b"garbage" for n in files}))
        with pytest.raises(DojoError, match="failed verification"):
            store.locate("toy-ml")
        assert not folder.exists()
    finally:
        store._DATASETS.pop(dataset.name)


def test_real_ml100k_verifies(real_data):
    st = store.status("ml-100k")
    assert st.state == "ok", st.detail
    data = movielens.load()
    assert (len(data.ratings), data.n_users, data.n_items) == (100_000, 943, 1682)
    train, test = movielens.split(data, "random")
    assert (len(train), len(test)) == (80_000, 20_000)
    assert data.titles[0] == "Toy Story (1995)"
