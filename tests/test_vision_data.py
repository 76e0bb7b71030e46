"""Image datasets: formats, checksums (sha256, md5, tree digests), both CIFAR-10 layouts, the flowers split."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest

from dldojo.data import images, safe_pickle, store
from dldojo.engine.errors import DojoError


def test_idx_fixture_loads_in_the_official_format(synthetic_data):
    train, test = images.load("mnist")
    assert train.images.shape == (300, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.images.shape == (100, 28, 28, 1) and set(test.labels) == set(range(10))
    assert store.status("mnist").state == "fixture"


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x09\x01" + (3).to_bytes(4, "big") + b"\x01\x02\x03"))
    with pytest.raises(DojoError, match="bad magic"):
        images.read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x01\x02"))
    with pytest.raises(DojoError, match="truncated"):
        images.read_idx(short)


def test_cifar_jpeg_tarball_fixture_decodes_and_is_cached(synthetic_data, tmp_path):
    train, test = images.load("cifar10")
    assert train.images.shape == (200, 32, 32, 3) and test.images.shape == (80, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [20] * 10
    assert train.classes == images.CIFAR10_CLASSES
    cached = list((tmp_path / "cache" / "dldojo" / "decoded").glob("cifar10-*/train_images.npy"))
    assert len(cached) == 1
    again, _ = images.load("cifar10")  # from the cache: identical arrays
    assert np.array_equal(again.images, train.images)


def official_cifar_batch(rows: np.ndarray, labels: list[int], name: bytes) -> bytes:
    """A batch byte for byte in the structure of the official `cifar-10-batches-py` files: Python 2 cPickle,
    protocol 2, a dict of byte-string keys; strings as (SHORT_)BINSTRING, the uint8 array as NumPy pickles it
    (numpy.core.multiarray._reconstruct + ndarray.__setstate__ with a numpy.dtype('u1'))."""
    P = pickle

    def s(b: bytes) -> bytes:
        return P.SHORT_BINSTRING + bytes([len(b)]) + b if len(b) < 256 else P.BINSTRING + struct.pack("<i", len(b)) + b

    def i(n: int) -> bytes:
        return P.BININT1 + bytes([n]) if 0 <= n < 256 else P.BININT + struct.pack("<i", n)

    array = [P.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n", P.GLOBAL + b"numpy\nndarray\n", i(0), P.TUPLE1,
             s(b"b"), P.TUPLE3, P.REDUCE,
             P.MARK, i(1), i(rows.shape[0]), i(rows.shape[1]), P.TUPLE2,
             P.GLOBAL + b"numpy\ndtype\n", s(b"u1"), i(0), i(1), P.TUPLE3, P.REDUCE,
             P.MARK, i(3), s(b"|"), P.NONE, P.NONE, P.NONE, i(-1), i(-1), i(0), P.TUPLE, P.BUILD,
             P.NEWFALSE, s(rows.tobytes()), P.TUPLE, P.BUILD]
    parts = [P.PROTO, b"\x02", P.EMPTY_DICT, P.MARK,
             s(b"batch_label"), s(name),
             s(b"labels"), P.EMPTY_LIST, P.MARK, *[i(k) for k in labels], P.APPENDS,
             s(b"data"), *array,
             s(b"filenames"), P.EMPTY_LIST, P.MARK, *[s(b"img_%05d.png" % k) for k in range(len(labels))], P.APPENDS,
             P.SETITEMS, P.STOP]
    return b"".join(parts)


def test_official_batch_format_reads_the_same_safely_as_with_pickle():
    """The restricted reader gives what `pickle.load(encoding='bytes')` gives (the loader every CIFAR-10 page
    shows), for the official Python 2 format and for the same dict pickled by Python 3."""
    rows = np.random.default_rng(0).integers(0, 256, (5, 3072), dtype=np.uint8)
    blob = official_cifar_batch(rows, [3, 1, 4, 1, 5], b"training batch 1 of 5")
    plain = pickle.loads(blob, encoding="bytes")  # our own benign bytes: the reference reading
    for data in (blob, *(pickle.dumps(plain, protocol=p) for p in (3, 4))):
        safe = safe_pickle.loads(data)
        assert sorted(safe) == [b"batch_label", b"data", b"filenames", b"labels"]
        assert safe[b"data"].dtype == np.uint8 and np.array_equal(safe[b"data"], plain[b"data"])
        assert safe[b"labels"] == [3, 1, 4, 1, 5] and safe[b"filenames"][4] == b"img_00004.png"


def test_cifar_official_pickles_are_the_alternative_layout(tmp_path, monkeypatch):
    """The official python version (what a download unpacks to) verifies and loads like the JPEG copy."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "root" / "cifar10"
    folder.mkdir(parents=True)
    expected = {}
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 4)]:
        data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        rows = data.transpose(0, 3, 1, 2).reshape(n, 3072)  # R plane, G plane, B plane
        (folder / name).write_bytes(official_cifar_batch(rows, labels, name.encode()))
        expected[name] = (data, labels)
    md5s = {name: "md5:" + hashlib.md5((folder / name).read_bytes()).hexdigest() for name in expected}
    monkeypatch.setitem(store._DATASETS, "cifar10", dataclasses.replace(images.CIFAR10, alt_files=md5s))
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "root"))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    status = store.status("cifar10")
    assert status.state == "ok" and status.detail == "alternative layout"
    train, test = images.load_cifar10()
    assert np.array_equal(train.images[:6], expected["data_batch_1"][0])
    assert np.array_equal(test.images, expected["test_batch"][0])
    assert test.labels.tolist() == expected["test_batch"][1]
    (folder / "data_batch_3").write_bytes(b"truncated")
    bad = store.status("cifar10")
    assert bad.state == "corrupt" and "data_batch_3 has md5" in bad.detail


def test_cifar_batch_of_the_wrong_shape_is_a_one_line_error(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(official_cifar_batch(np.zeros((2, 100), np.uint8), [0, 1], b"x"))
    with pytest.raises(DojoError, match="is not a CIFAR-10 batch"):
        images.read_cifar_batch(path)
    path.write_bytes(official_cifar_batch(np.zeros((2, 3072), np.uint8), [0, 10], b"x"))
    with pytest.raises(DojoError, match="is not a CIFAR-10 batch"):
        images.read_cifar_batch(path)


def test_flowers_tree_digest_catches_a_changed_file(tmp_path, monkeypatch):
    folder = images.make_flowers_fixture(tmp_path / "root")
    (folder / store.FIXTURE_MANIFEST).unlink()  # pose as the real dataset, registered with these digests
    trees = {cls: store.tree_digest(folder / cls) for cls in images.FLOWER_CLASSES}
    monkeypatch.setitem(store._DATASETS, "flowers", dataclasses.replace(images.FLOWERS, tree_sha256=trees))
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "root"))
    assert store.status("flowers").state == "ok"
    victim = sorted((folder / "rose").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-10])
    status = store.status("flowers")
    assert status.state == "corrupt" and "rose/ does not match" in status.detail


def test_flowers_split_is_stratified_and_fixed(synthetic_data):
    train, test = images.load("flowers")
    assert len(train) + len(test) == 80 and train.images.shape[1:] == (128, 128, 3)
    assert np.bincount(test.labels).tolist() == [3] * 5  # round(0.2 * 16) of every class
    again_train, again_test = images.load("flowers")
    assert np.array_equal(again_test.images, test.images)
    _, other = images.load_flowers(split_seed=1)
    assert not np.array_equal(other.images, test.images)


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(3), [100, 50, 10])
    train, test = images.stratified_split(labels, 0.2, seed=3)
    assert np.bincount(labels[test]).tolist() == [20, 10, 2]
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(labels)


def test_manual_download_dataset_explains_how(tmp_path, monkeypatch):
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DojoError, match="Kaggle needs an account"):
        store.locate("flowers")


def test_missing_mnist_offline_names_every_file_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DLDOJO_OFFLINE", "1")
    with pytest.raises(DojoError) as err:
        store.locate("mnist")
    assert "t10k-labels-idx1-ubyte.gz" in str(err.value) and "offline" in str(err.value)


def test_to_tensor_and_channel_stats():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 4, 3, 2), dtype=np.uint8)
    mean, std = images.channel_stats(x)
    t = images.to_tensor(x, mean, std)
    assert t.shape == (5, 2, 4, 3)
    np.testing.assert_allclose(t.mean((0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(t.std((0, 2, 3), correction=0).numpy(), 1, atol=1e-5)


@pytest.mark.realdata
def test_real_image_datasets(real_data):
    for name, n_train, n_test, shape in [("mnist", 60000, 10000, (28, 28, 1)),
                                         ("fashion-mnist", 60000, 10000, (28, 28, 1)),
                                         ("cifar10", 50000, 10000, (32, 32, 3))]:
        train, test = images.load(name)
        assert (len(train), len(test)) == (n_train, n_test) and train.images.shape[1:] == shape
        assert len(set(test.labels)) == 10
    train, test = images.load("flowers")
    assert (len(train), len(test)) == (3453, 864)
    assert np.bincount(train.labels + 0).tolist() == [611, 842, 627, 586, 787]
