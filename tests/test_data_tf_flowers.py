"""tf_flowers: both layouts (the copy's tarball, the official flower_photos folders), the decoded squares, the
fixed stratified 70/30 split, the official download checked by its published sha256, and the real copy."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dldojo.data import images, store
from dldojo.engine.errors import DojoError


def test_fixture_decodes_to_squares_and_splits_70_30_fixed(synthetic_data):
    assert store.status("tf_flowers").state == "fixture"
    train, test = images.load("tf_flowers")
    assert (len(train), len(test)) == (85, 35) and train.images.shape[1:] == (192, 192, 3)
    assert np.bincount(test.labels).tolist() == [7] * 5  # round(0.3 · 24) of every class
    assert train.classes == ("daisy", "dandelion", "roses", "sunflowers", "tulips")
    again_train, again_test = images.load("tf_flowers")  # from the decoded cache now
    assert np.array_equal(again_test.images, test.images) and np.array_equal(again_train.labels, train.labels)
    _, other = images.load_tf_flowers(split_seed=1)
    assert not np.array_equal(other.images, test.images)


def test_decode_square_resizes_the_shorter_side_then_keeps_the_centre():
    from PIL import Image

    photo = np.zeros((100, 200, 3), dtype=np.uint8)
    photo[:, :50] = (0, 0, 255)  # the outer quarters are blue, the centre half red
    photo[:, 50:150] = (255, 0, 0)
    photo[:, 150:] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=95)
    square = images.decode_square(buf.getvalue(), 50)
    assert square.shape == (50, 50, 3)
    assert square[:, 2:-2, 0].min() > 200 and square[:, 2:-2, 2].max() < 60  # only the red centre is left


def _official_layout(fixture: Path, target: Path) -> Path:
    """The fixture's photos and LICENSE.txt as the official download unpacks them: flower_photos/{class}/."""
    store.safe_extract(fixture / "tf_flowers.tar.gz", target / "unpacked")
    shutil.move(target / "unpacked" / "tf_flowers", target / "flower_photos")
    return target / "flower_photos"


def test_official_layout_reads_the_same_photos_and_needs_every_listed_one(tmp_path):
    fixture = images.make_tf_flowers_fixture(tmp_path / "copy")
    official = _official_layout(fixture, tmp_path)
    from_tarball, from_folders = images.read_tf_flowers(fixture), images.read_tf_flowers(official)
    assert np.array_equal(from_tarball["images"], from_folders["images"])
    assert np.array_equal(from_tarball["labels"], from_folders["labels"])
    (official / "roses" / "roses_003.jpg").unlink()
    with pytest.raises(DojoError, match=r"1 of the 120 photos LICENSE.txt lists are missing \(roses/roses_003.jpg\)"):
        images.read_tf_flowers(official)


def test_official_download_is_checked_by_its_published_sha256_before_extraction(tmp_path, monkeypatch):
    """The online path with a file:// URL: the archive's own sha256 (tfds publishes the official one) is
    checked before anything is unpacked; then the folder verifies by its LICENSE.txt (alt_files)."""
    official = _official_layout(images.make_tf_flowers_fixture(tmp_path / "copy"), tmp_path)
    archive = tmp_path / "flower_photos.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(official, arcname="flower_photos")
    url = archive.as_uri()
    registered = dataclasses.replace(images.TF_FLOWERS, urls=(url,), download_sha256={url: "0" * 64},
                                     alt_files={"LICENSE.txt": store.sha256_of(official / "LICENSE.txt")})
    monkeypatch.setitem(store._DATASETS, "tf_flowers", registered)
    monkeypatch.setenv("DLDOJO_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DLDOJO_OFFLINE", raising=False)
    with pytest.raises(DojoError, match="has sha256 .* expected 000000000000.*nothing was extracted"):
        store.locate("tf_flowers")
    assert not (tmp_path / "cache" / "dldojo" / "tf_flowers").exists()

    monkeypatch.setitem(store._DATASETS, "tf_flowers", dataclasses.replace(
        registered, download_sha256={url: store.sha256_of(archive)}))
    folder = store.locate("tf_flowers")
    assert folder == tmp_path / "cache" / "dldojo" / "tf_flowers"
    assert store.status("tf_flowers").detail == "alternative layout"
    train, test = images.load("tf_flowers")
    assert (len(train), len(test)) == (85, 35)


@pytest.mark.realdata
def test_real_tf_flowers(real_data):
    assert store.status("tf_flowers").state == "ok"
    train, test = images.load("tf_flowers")
    assert (len(train), len(test)) == (2569, 1101) and train.images.shape[1:] == (192, 192, 3)
    assert np.bincount(train.labels).tolist() == [443, 629, 449, 489, 559]  # of 633, 898, 641, 699, 799
    assert np.bincount(test.labels).tolist() == [190, 269, 192, 210, 240]
