"""Image datasets of the vision family: MNIST, Fashion-MNIST, CIFAR-10, tf_flowers and flowers-5.

    mnist          LeCun, Bottou, Bengio & Haffner 1998: 60,000 + 10,000 handwritten digits, 28×28 grey
    fashion-mnist  Xiao, Rasul & Vollgraf 2017: 60,000 + 10,000 Zalando article images, 28×28 grey
    cifar10        Krizhevsky 2009: 50,000 + 10,000 colour images, 32×32, 10 classes
    flowers        Kaggle "Flowers Recognition": 4,317 photos of daisy / dandelion / rose / sunflower /
                   tulip, here already resized to 128×128; no official split, so `load` makes a fixed
                   stratified 80/20 split (every class split on its own, seeded)
    tf_flowers     TensorFlow's flower_photos (2019): 3,670 Flickr photos (CC BY 2.0) of daisy / dandelion /
                   roses / sunflowers / tulips, the curriculum's transfer-learning set; no official split
                   (tfds has one "train" split), so `load` makes a fixed stratified 70/30 split like the
                   curriculum's `train[:70%]` / `train[70%:]`

Formats. MNIST and Fashion-MNIST are the official idx files, gzip-compressed (big-endian header: magic,
dimensions, then uint8 pixels). CIFAR-10 comes in two layouts and both are accepted: the copy kept for
offline machines is a JPEG re-encoding in image-folder layout inside one tarball
(`cifar10/{train,test}/<class>/NNNN.jpg`, quality 75, so pixels differ slightly from the original),
and the official download (`cifar-10-python.tar.gz`) unpacks to the python pickles
(`data_batch_1..5`, `test_batch`: rows of 3,072 bytes, R then G then B planes), which are read with
`dldojo.data.safe_pickle`: nothing in a data folder is ever executed. Flowers is an
image-folder of JPEGs verified by one digest per class folder. tf_flowers also has two layouts: the copy
kept here (`tf_flowers.tar.gz`: `tf_flowers/{class}/{name}.jpg` + LICENSE.txt, photos re-saved at a 192-px
shorter side, see SOURCES.md) and the official `flower_photos.tgz` (full-size photos in
`flower_photos/{class}/`), whose download is checked against the sha256 tfds publishes for it and whose
folder against its LICENSE.txt (the same file in both) and the 3,670 photos that file lists. Photos differ
in size, so both are decoded to squares of `TF_FLOWERS_SIZE` px: the shorter side resized to it (Lanczos),
then the centre square (what a centre crop at test time sees; the training crops are taken from it).

Decoding thousands of JPEGs takes seconds, so the decoded arrays are cached once, as uint8 `.npy`
files under the user cache (`~/.cache/dldojo/decoded/`), keyed by the digest of the verified source:
a changed source is decoded again, never silently reused. Every split is returned as uint8 NHWC
arrays (`ImageSplit`); models get float NCHW tensors from `to_tensor`.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import torch

from dldojo.data import safe_pickle
from dldojo.data.store import (FIXTURE_MANIFEST, Dataset, cache_root, is_fixture, locate, register_dataset,
                               write_manifest)
from dldojo.engine.errors import DojoError

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")

MNIST = register_dataset(Dataset(
    name="mnist",
    description="MNIST handwritten digits: 60,000 train / 10,000 test, 28x28 grey (idx gz)",
    files={
        "train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
        "train-labels-idx1-ubyte.gz": "51fc562b6747b666fbf6e84ce29d43c3cb5f9c388c664d43b33f02095313405a",
        "t10k-images-idx3-ubyte.gz": "cfeddb84311ecf044fc6a5b0f6ee8a24d265d4e83e388400186eb114082f4209",
        "t10k-labels-idx1-ubyte.gz": "e41c74e484045d39b462a7790a4af51301bd9b0b24f0154798d713ec68c45920",
    },
    urls=(MNIST_URL,),
    file_urls={f: MNIST_URL + f for f in IDX_FILES},
    license="CC BY-SA 3.0 (LeCun & Cortes)",
    citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, Gradient-based learning applied to document "
             "recognition, Proc. IEEE 1998.",
    fixture=lambda root: make_idx_fixture(root, "mnist"),  # fixture writers are defined at the end
    max_extracted_bytes=32 << 20,  # four gz files, 11.6 MB
))

FASHION_MNIST = register_dataset(Dataset(
    name="fashion-mnist",
    description="Fashion-MNIST article images: 60,000 train / 10,000 test, 28x28 grey (idx gz)",
    files={
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
    urls=("https://github.com/zalandoresearch/fashion-mnist",),
    file_urls={f: FASHION_URL + f for f in IDX_FILES},
    license="MIT (Zalando Research)",
    citation="H. Xiao, K. Rasul, R. Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine "
             "Learning Algorithms, arXiv:1708.07747, 2017.",
    fixture=lambda root: make_idx_fixture(root, "fashion-mnist", seed=1),
    max_extracted_bytes=64 << 20,  # four gz files, 30.9 MB
))

CIFAR_PICKLES = {  # md5s published with the official archive (as torchvision checks them); read with safe_pickle
    "data_batch_1": "md5:c99cafc152244af753f735de768cd75f",
    "data_batch_2": "md5:d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "md5:54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "md5:634d18415352ddfa80567beed471001a",
    "data_batch_5": "md5:482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "md5:40351d587109b95175f43aff81a1287e",
}
CIFAR10 = register_dataset(Dataset(
    name="cifar10",
    description="CIFAR-10: 50,000 train / 10,000 test colour images, 32x32, 10 classes",
    files={"cifar10-jpg.tar.gz": "a5240446db0abc334098a79dc1da60e2bf64588392ba740d4c79878b8cf0cb30"},
    alt_files=CIFAR_PICKLES,
    urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    archive_prefix="cifar-10-batches-py",
    license="free for research; cite Krizhevsky 2009",
    citation="A. Krizhevsky, Learning Multiple Layers of Features from Tiny Images, tech. report, 2009.",
    fixture=lambda root: make_cifar_fixture(root),
    max_extracted_bytes=400 << 20,  # cifar-10-python.tar.gz (163 MB) unpacks to about 190 MB
))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

FLOWER_CLASSES = ("daisy", "dandelion", "rose", "sunflower", "tulip")
FLOWERS = register_dataset(Dataset(
    name="flowers",
    description="flowers-5: 4,317 photos (daisy, dandelion, rose, sunflower, tulip), 128x128 JPEG",
    files={},
    tree_sha256={
        "daisy": "cced130be95ff191bb33bcb446778a20fe86634966e00cf52f8e1b970c1f98a0",
        "dandelion": "d58e2b48d5c5abecd0c966e6d2487cca7ac883d6d468b89e5859dd395a1f3e07",
        "rose": "06935965ca80df18f83cd6adf70489ca2a04c1a44f71ec962aa2f64b69caeba6",
        "sunflower": "f36ca5a05ef3bf7d23a24b8f5173fed9ea08ed3d31fadbfac50d4edd7e903b3e",
        "tulip": "e1b6f743e869f0428f8bb6c74f859271027e3177c46fbbeff6adca0423469429",
    },
    urls=("https://www.kaggle.com/datasets/alxmamaev/flowers-recognition",),
    manual_download="Kaggle needs an account: download 'Flowers Recognition' from "
                    "https://www.kaggle.com/datasets/alxmamaev/flowers-recognition, resize every image to "
                    "128x128 and put the five class folders (daisy/ dandelion/ rose/ sunflower/ tulip/) in a "
                    "folder flowers/",
    license="web images (Flickr etc.), research use",
    citation="A. Mamaev, Flowers Recognition, Kaggle 2018 (the five classes of TensorFlow's tf_flowers).",
    fixture=lambda root: make_flowers_fixture(root),
))


TF_FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
TF_FLOWERS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
TF_FLOWERS_SIZE = 192  # the side of the decoded squares: the shorter side of the copy kept here
TF_FLOWERS = register_dataset(Dataset(
    name="tf_flowers",
    description="tf_flowers (TensorFlow flower_photos): 3,670 Flickr photos of daisy, dandelion, roses, sunflowers, "
                "tulips",
    files={"tf_flowers.tar.gz": "bc598cbbfa566149c70f1a5a0d178694db7b49251635fc11642c768de5eb22e6"},
    # the official layout: its LICENSE.txt (kept verbatim in the copy above), and every photo it lists (`load`)
    alt_files={"LICENSE.txt": "701e91b9e9f46d1f9623fc793a00fd444fe2821f66b01f3a0ff4a73d82f49507"},
    urls=(TF_FLOWERS_URL,),
    # tensorflow_datasets/url_checksums/tf_flowers.txt: 228,813,984 bytes
    download_sha256={TF_FLOWERS_URL: "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"},
    archive_prefix="flower_photos",
    license="CC BY 2.0, per photo (LICENSE.txt names each photo's author)",
    citation="The TensorFlow Team, Flowers, 2019, http://download.tensorflow.org/example_images/flower_photos.tgz",
    fixture=lambda root: make_tf_flowers_fixture(root),
    max_extracted_bytes=600 << 20,  # flower_photos.tgz: 229 MB, unpacking to about as much
))


@dataclasses.dataclass
class ImageSplit:
    """One split of an image dataset: uint8 images (N, H, W, C), int64 labels (N,), class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | slice) -> ImageSplit:
        return ImageSplit(self.images[index], self.labels[index], self.classes)

    def head(self, n: int, seed: int = 0) -> ImageSplit:
        """A class-stratified subset of about `n` images (all when n <= 0 or n >= len)."""
        if n <= 0 or n >= len(self):
            return self
        return self.subset(np.sort(stratified_split(self.labels, n / len(self), seed)[1]))


def as_uint8_tensor(images: np.ndarray) -> torch.Tensor:
    """A NumPy array (often a read-only memory map of the cache) as a tensor, copied only when it must be:
    torch cannot share memory it may not write to."""
    if not (images.flags.writeable and images.flags.c_contiguous):
        images = np.array(images, order="C")
    return torch.from_numpy(images)


def to_tensor(images: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [0, 1], then (x - mean) / std per channel if given."""
    x = as_uint8_tensor(images).permute(0, 3, 1, 2).float().div_(255)
    if mean is not None:
        x = (x - torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)) / torch.as_tensor(
            std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.contiguous()


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images, in [0, 1] units (float64 sums)."""
    flat = images.reshape(-1, images.shape[-1])
    mean = flat.mean(0, dtype=np.float64) / 255
    std = np.sqrt((flat.astype(np.float64) ** 2).mean(0) / 255**2 - mean**2)
    return mean.astype(np.float32), std.astype(np.float32)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, test_index): every class is shuffled with its own seeded permutation and its first
    round(test_fraction · n_class) images go to the test split, so class proportions are kept."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        k = int(round(test_fraction * len(members)))
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ----- readers of the on-disk formats -----

def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip): magic 0x00000801 (labels) or 0x00000803 (images), big-endian dims, uint8 data."""
    raw = gzip.decompress(Path(path).read_bytes())
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DojoError(f"{path} is not an idx file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DojoError(f"{path}: header says {dims} but holds {data.size} bytes (truncated?)")
    return data.reshape(dims)


def _decode_jpeg(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


CIFAR_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)/[^/]+\.(?:jpg|jpeg|png)$", re.IGNORECASE)


def read_cifar_jpeg_tarball(path: Path) -> dict[str, np.ndarray]:
    """Decode `cifar10/{train,test}/<class>/*.jpg` members of the tarball, in sorted name order."""
    out: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(path) as tf:
        members = sorted((m for m in tf.getmembers() if m.isfile() and CIFAR_MEMBER.search(m.name)),
                         key=lambda m: m.name)
        for m in members:
            split, cls = CIFAR_MEMBER.search(m.name).groups()
            if cls not in CIFAR10_CLASSES:
                raise DojoError(f"{path}: unknown CIFAR-10 class folder {cls!r} in {m.name}")
            out[split].append((_decode_jpeg(tf.extractfile(m).read()), CIFAR10_CLASSES.index(cls)))
    arrays = {}
    for split, items in out.items():
        if not items:
            raise DojoError(f"{path} holds no {split}/<class>/*.jpg images")
        arrays[f"{split}_images"] = np.stack([im for im, _ in items])
        arrays[f"{split}_labels"] = np.array([label for _, label in items], dtype=np.int64)
    return arrays


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official python batch: a dict with b'data' (N, 3072 uint8: R, G, B planes of 32×32) and
    b'labels' (N ints in 0..9), read with `safe_pickle` (nothing in the file is executed) and checked."""
    batch = safe_pickle.load_data(path)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, list) and len(labels) == len(data)
            and all(type(k) is int and 0 <= k < 10 for k in labels)):
        raise DojoError(f"{path} is not a CIFAR-10 batch (a dict of b'data': N x 3072 uint8 and b'labels': N "
                        "ints in 0..9); delete it and fetch the official files again.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels, dtype=np.int64)


def read_cifar_pickles(folder: Path) -> dict[str, np.ndarray]:
    """The official python version: `data_batch_1..5` (train) and `test_batch`, see `read_cifar_batch`."""
    arrays = {}
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        images, labels = [], []
        for name in names:
            batch_images, batch_labels = read_cifar_batch(folder / name)
            images.append(batch_images)
            labels.append(batch_labels)
        arrays[f"{split}_images"] = np.ascontiguousarray(np.concatenate(images))
        arrays[f"{split}_labels"] = np.concatenate(labels)
    return arrays


def read_image_folder(folder: Path, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    images, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                images.append(_decode_jpeg(path.read_bytes()))
                labels.append(label)
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DojoError(f"{folder}: images have different sizes {sorted(shapes)[:3]}...; resize them all to one size")
    return {"images": np.stack(images), "labels": np.array(labels, dtype=np.int64)}


TF_FLOWERS_MEMBER = re.compile(r"(?:^|/)(daisy|dandelion|roses|sunflowers|tulips)/([^/]+\.jpe?g)$", re.IGNORECASE)


def decode_square(data: bytes, size: int) -> np.ndarray:
    """A JPEG → uint8 (size, size, 3): shorter side resized to `size` (Lanczos; never a JPEG draft below it),
    then the centre square."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))  # large JPEGs decode at 1/2, 1/4 … scale while both sides stay >= size
        return np.asarray(ImageOps.fit(im.convert("RGB"), (size, size), method=Image.Resampling.LANCZOS))


def read_tf_flowers(folder: Path, size: int = TF_FLOWERS_SIZE) -> dict[str, np.ndarray]:
    """Decode tf_flowers in either layout (see the module docstring), photos in sorted name order per class."""
    encoded: list[tuple[str, int, bytes]] = []
    if (folder / "tf_flowers.tar.gz").exists():
        with tarfile.open(folder / "tf_flowers.tar.gz") as tf:  # read in place: nothing is extracted
            for m in tf.getmembers():
                match = TF_FLOWERS_MEMBER.search(m.name)
                if m.isfile() and match:
                    cls = match.group(1).lower()
                    encoded.append((f"{cls}/{match.group(2)}", TF_FLOWER_CLASSES.index(cls), tf.extractfile(m).read()))
    else:  # the official layout: every photo LICENSE.txt lists must be there
        listed = re.findall(r"^(\w+/[^/\s]+\.jpg) ", (folder / "LICENSE.txt").read_text(errors="replace"), re.MULTILINE)
        missing = [name for name in listed if not (folder / name).is_file()]
        if not listed or missing:
            raise DojoError(f"{folder}: {len(missing)} of the {len(listed)} photos LICENSE.txt lists are missing "
                            f"({', '.join(missing[:3])}); fetch {TF_FLOWERS_URL} again")
        for label, cls in enumerate(TF_FLOWER_CLASSES):
            for path in (folder / cls).iterdir():
                if path.suffix.lower() in (".jpg", ".jpeg"):
                    encoded.append((f"{cls}/{path.name}", label, path.read_bytes()))
    if not encoded or {label for _, label, _ in encoded} != set(range(len(TF_FLOWER_CLASSES))):
        raise DojoError(f"{folder} holds no photos of some tf_flowers classes ({', '.join(TF_FLOWER_CLASSES)})")
    encoded.sort(key=lambda item: item[0])
    return {"images": np.stack([decode_square(data, size) for _, _, data in encoded]),
            "labels": np.array([label for _, label, _ in encoded], dtype=np.int64)}


# ----- the decoded-array cache -----

def source_key(folder: Path, dataset: Dataset) -> str:
    """A digest that changes whenever the verified source files change (fixtures: their manifest)."""
    if is_fixture(folder):
        text = (folder / FIXTURE_MANIFEST).read_text()
    else:
        text = json.dumps([dataset.files, dataset.alt_files, dataset.tree_sha256, sorted(
            p.name for p in folder.iterdir())], sort_keys=True)
    return hashlib.sha256(f"{folder.resolve()}|{text}".encode()).hexdigest()[:20]


def cached_arrays(name: str, folder: Path, decode, tag: str = "") -> dict[str, np.ndarray]:
    """Load `decode(folder)`'s arrays from the cache, or decode once and store them (atomically). `tag`
    names how they were decoded (e.g. the size), when that can differ."""
    dataset = {"cifar10": CIFAR10, "flowers": FLOWERS, "tf_flowers": TF_FLOWERS}[name]
    cache = cache_root() / "decoded" / f"{name}{tag}-{source_key(folder, dataset)}"
    index = cache / "arrays.json"
    if index.exists():
        keys = json.loads(index.read_text())
        try:
            return {k: np.load(cache / f"{k}.npy") for k in keys}
        except (OSError, ValueError):
            pass  # a damaged cache entry is decoded again below
    arrays = decode(folder)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for key, value in arrays.items():
            tmp = cache / f".{key}.tmp.npy"
            np.save(tmp, value)
            tmp.replace(cache / f"{key}.npy")
        index.write_text(json.dumps(sorted(arrays)))
    except OSError:
        pass  # a read-only or full cache: use the decoded arrays without keeping them
    return arrays


# ----- loaders -----

def load_idx_dataset(name: str) -> tuple[ImageSplit, ImageSplit]:
    folder = locate(name)
    classes = (tuple(str(d) for d in range(10)) if name == "mnist" else
               ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"))
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        if len(images) != len(labels):
            raise DojoError(f"{folder}: {prefix} has {len(images)} images but {len(labels)} labels")
        splits.append(ImageSplit(images[..., None], labels, classes))
    return splits[0], splits[1]


def load_cifar10() -> tuple[ImageSplit, ImageSplit]:
    folder = locate("cifar10")
    if (folder / "cifar10-jpg.tar.gz").exists():
        arrays = cached_arrays("cifar10", folder, lambda f: read_cifar_jpeg_tarball(f / "cifar10-jpg.tar.gz"))
    else:
        arrays = read_cifar_pickles(folder)  # already raw bytes: nothing to decode or cache
    return (ImageSplit(arrays["train_images"], arrays["train_labels"], CIFAR10_CLASSES),
            ImageSplit(arrays["test_images"], arrays["test_labels"], CIFAR10_CLASSES))


def load_flowers(split_seed: int = 0, test_fraction: float = 0.2) -> tuple[ImageSplit, ImageSplit]:
    """The fixed stratified split: 20 % of every class (seeded by `split_seed`) is the test set."""
    folder = locate("flowers")
    arrays = cached_arrays("flowers", folder, lambda f: read_image_folder(f, FLOWER_CLASSES))
    everything = ImageSplit(arrays["images"], arrays["labels"], FLOWER_CLASSES)
    train_index, test_index = stratified_split(everything.labels, test_fraction, split_seed)
    return everything.subset(train_index), everything.subset(test_index)


def load_tf_flowers(split_seed: int = 0, test_fraction: float = 0.3) -> tuple[ImageSplit, ImageSplit]:
    """The fixed stratified split: 30 % of every class (seeded by `split_seed`) is the test set, as the
    curriculum's tfds `train[70%:]` (which took the last 30 % of tfds's shuffled order instead)."""
    folder = locate("tf_flowers")
    arrays = cached_arrays("tf_flowers", folder, read_tf_flowers, tag=f"-{TF_FLOWERS_SIZE}px")
    everything = ImageSplit(arrays["images"], arrays["labels"], TF_FLOWER_CLASSES)
    train_index, test_index = stratified_split(everything.labels, test_fraction, split_seed)
    return everything.subset(train_index), everything.subset(test_index)


def load(name: str, split_seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """(train, test) of an image dataset: 'mnist', 'fashion-mnist', 'cifar10', 'tf_flowers' or 'flowers'."""
    if name in ("mnist", "fashion-mnist"):
        return load_idx_dataset(name)
    if name == "cifar10":
        return load_cifar10()
    if name == "flowers":
        return load_flowers(split_seed)
    if name == "tf_flowers":
        return load_tf_flowers(split_seed)
    raise DojoError(f"no image loader for dataset {name!r}; image datasets: mnist, fashion-mnist, cifar10, "
                    "tf_flowers, flowers")


# ----- tiny synthetic fixtures in the real formats (tests without the real data) -----

def _pattern_images(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int,
                    n_classes: int) -> np.ndarray:
    """Class k: a bright square whose position and colour depend on k, plus noise; learnable in a few steps."""
    n = len(labels)
    images = rng.integers(0, 60, size=(n, size, size, channels)).astype(np.float32)
    cell = max(2, size // 4)
    for i, k in enumerate(labels):
        r, c = divmod(int(k) % 9, 3)
        jitter = rng.integers(-1, 2, size=2)
        top, left = max(0, r * cell + cell // 2 + jitter[0]), max(0, c * cell + cell // 2 + jitter[1])
        colour = np.full(channels, 230.0)
        if channels == 3:
            colour = np.array([230.0, 40 + 19 * k, 230 - 19 * k]) if k >= 9 else np.roll([230.0, 90, 20], k % 3)
        images[i, top:top + cell, left:left + cell] = colour
    return np.clip(images, 0, 255).astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    code = 0x08
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    # mtime=0: the same fixture bytes every time, so its manifest is stable
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0))


def make_idx_fixture(root: Path, name: str = "mnist", n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", _pattern_images(rng, labels, 28, 1, 10)[..., 0])
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    write_manifest(folder)
    return folder


def _jpeg_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_cifar_fixture(root: Path, per_class_train: int = 20, per_class_test: int = 8, seed: int = 0) -> Path:
    """A tarball in the offline copy's layout: cifar10/{train,test}/<class>/NNNN.jpg."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "cifar10-jpg.tar.gz", "w:gz") as tf:
        for split, per_class in (("train", per_class_train), ("test", per_class_test)):
            labels = np.repeat(np.arange(10), per_class)
            for j, (image, k) in enumerate(zip(_pattern_images(rng, labels, 32, 3, 10), labels)):
                data = _jpeg_bytes(image)
                info = tarfile.TarInfo(f"cifar10/{split}/{CIFAR10_CLASSES[k]}/{j:04d}.jpg")
                info.size, info.mtime = len(data), 0
                tf.addfile(info, io.BytesIO(data))
    write_manifest(folder)
    return folder


def make_flowers_fixture(root: Path, per_class: int = 16, size: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(root) / "flowers"
    for k, cls in enumerate(FLOWER_CLASSES):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for j, image in enumerate(_pattern_images(rng, np.full(per_class, k), size, 3, 5)):
            (folder / cls / f"{cls}_{j:03d}.jpg").write_bytes(_jpeg_bytes(image))
    write_manifest(folder)
    return folder



def make_tf_flowers_fixture(root: Path, per_class: int = 24, seed: int = 0) -> Path:
    """A tarball in the copy's layout (tf_flowers/{class}/{name}.jpg + LICENSE.txt), photos of two shapes."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "tf_flowers"
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    with tarfile.open(folder / "tf_flowers.tar.gz", "w:gz") as tf:
        for k, cls in enumerate(TF_FLOWER_CLASSES):
            for j, image in enumerate(_pattern_images(rng, np.full(per_class, k), 64, 3, 5)):
                image = image[:48] if j % 2 else image[:, 8:56]  # landscape 64x48 and portrait 48x64 photos
                data = _jpeg_bytes(np.ascontiguousarray(image))
                info = tarfile.TarInfo(f"tf_flowers/{cls}/{cls}_{j:03d}.jpg")
                info.size, info.mtime = len(data), 0
                tf.addfile(info, io.BytesIO(data))
                lines.append(f"{cls}/{cls}_{j:03d}.jpg CC-BY by a synthetic test fixture")
        text = "\n".join(["Synthetic test photos.", "", *lines, ""]).encode()
        info = tarfile.TarInfo("tf_flowers/LICENSE.txt")
        info.size, info.mtime = len(text), 0
        tf.addfile(info, io.BytesIO(text))
    write_manifest(folder)
    return folder
