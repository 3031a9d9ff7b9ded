import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.train import data as D


# ------------------------------------------------------------------------------------------------ digits

@pytest.fixture(scope="module")
def digits():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    bunch = sklearn_datasets.load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def test_digits_split_sizes_disjoint_and_stratified(digits):
    pixels, labels = digits
    train = D.load_digits_dataset("train", test_fraction=0.25, seed=3, as_images=False, normalize=False)
    test = D.load_digits_dataset("test", test_fraction=0.25, seed=3, as_images=False, normalize=False)
    assert len(train) + len(test) == 1797
    assert train.tensors[0].shape[1:] == (64,) and train.tensors[1].dtype == torch.int64

    # Recover the raw row multiset of each split: unnormalised pixels are raw / 16.
    def keys(ds):
        raw = np.rint(ds.tensors[0].numpy().astype(np.float64) * 16).astype(np.float64)
        return [r.tobytes() for r in raw], ds.tensors[1].numpy()

    train_keys, train_y = keys(train)
    test_keys, test_y = keys(test)
    from collections import Counter
    all_rows = Counter((r.tobytes(), int(y)) for r, y in zip(pixels, labels))
    got = Counter(zip(train_keys, train_y.tolist())) + Counter(zip(test_keys, test_y.tolist()))
    assert got == all_rows  # together the whole set, each sample exactly once => disjoint

    for cls in range(10):
        n_c = int((labels == cls).sum())
        assert abs(int((test_y == cls).sum()) - 0.25 * n_c) <= 1
        assert int((train_y == cls).sum()) + int((test_y == cls).sum()) == n_c


def test_digits_deterministic_by_seed(digits):
    a = D.load_digits_dataset("test", seed=5)
    b = D.load_digits_dataset("test", seed=5)
    c = D.load_digits_dataset("test", seed=6)
    assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert not torch.equal(a.tensors[0], c.tensors[0])


def test_digits_normalisation_uses_train_statistics(digits):
    raw_train = D.load_digits_dataset("train", seed=0, normalize=False)
    raw_test = D.load_digits_dataset("test", seed=0, normalize=False)
    train = D.load_digits_dataset("train", seed=0)
    test = D.load_digits_dataset("test", seed=0)
    assert train.tensors[0].shape[1:] == (1, 8, 8)
    assert float(raw_train.tensors[0].min()) >= 0 and float(raw_train.tensors[0].max()) <= 1
    mean = raw_train.tensors[0].double().mean()
    std = raw_train.tensors[0].double().std(unbiased=False)
    assert abs(float(train.tensors[0].double().mean())) < 1e-5
    assert abs(float(train.tensors[0].double().std(unbiased=False)) - 1) < 1e-4
    expected_test = (raw_test.tensors[0].double() - mean) / std
    assert torch.allclose(test.tensors[0].double(), expected_test, atol=1e-5)
    assert abs(float(test.tensors[0].mean())) > 1e-4  # test statistics are not forced to zero


def test_digits_loaders_seeded_shuffle(digits):
    tr1, te1 = D.digits_loaders(batch_size=100, seed=1)
    tr2, _ = D.digits_loaders(batch_size=100, seed=1)
    y1 = torch.cat([y for _, y in tr1])
    y2 = torch.cat([y for _, y in tr2])
    assert torch.equal(y1, y2)
    assert len(y1) + sum(len(y) for _, y in te1) == 1797
    x, _ = next(iter(tr1))
    assert x.shape == (100, 1, 8, 8)


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"split": "val"}, ValueError, "split"),
    ({"test_fraction": 0.0}, ValueError, "test_fraction"),
    ({"test_fraction": 1.0}, ValueError, "test_fraction"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"as_images": "yes"}, TypeError, "as_images"),
])
def test_digits_argument_validation(digits, kwargs, exc, word):
    with pytest.raises(exc, match=word):
        D.load_digits_dataset(**kwargs)


@pytest.mark.parametrize("kwargs, exc", [({"batch_size": 0}, ValueError), ({"batch_size": 2.0}, TypeError),
                                         ({"num_workers": -1}, ValueError)])
def test_digits_loaders_validation(digits, kwargs, exc):
    with pytest.raises(exc, match=next(iter(kwargs))):
        D.digits_loaders(**kwargs)


# ------------------------------------------------------------------------------------------------ CIFAR-10

def _write_cifar_batch(path, images_chw: np.ndarray, labels, protocol=2):
    # Official layout: each row is 1024 red bytes, then 1024 green, then 1024 blue, each row-major 32x32.
    rows = np.empty((images_chw.shape[0], 3072), dtype=np.uint8)
    for n in range(images_chw.shape[0]):
        for c in range(3):
            for i in range(32):
                for j in range(32):
                    rows[n, c * 1024 + i * 32 + j] = images_chw[n, c, i, j]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fake", b"labels": list(labels), b"data": rows,
                     b"filenames": [b"x.png"] * len(labels)}, f, protocol=protocol)


@pytest.fixture
def cifar_root(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        imgs = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
        _write_cifar_batch(tmp_path / f"data_batch_{i}", imgs, [i, (i + 1) % 10], protocol=2 if i % 2 else 5)
    test_imgs = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    test_imgs[0, 1, 5, 7] = 255  # one green pixel at row 5, column 7
    test_imgs[0, 2, 31, 0] = 51  # blue at the bottom-left corner
    _write_cifar_batch(tmp_path / "test_batch", test_imgs, [4])
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    return tmp_path


def test_cifar_pixel_lands_in_place(cifar_root):
    test = D.CIFAR10Folder(cifar_root, train=False)
    assert len(test) == 1
    x, y = test[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 4
    expected = torch.zeros(3, 32, 32)
    expected[1, 5, 7] = 1.0
    expected[2, 31, 0] = 51 / 255
    assert torch.allclose(x, expected)
    assert test.classes[4] == "deer"


def test_cifar_train_batches_in_order(cifar_root):
    train = D.CIFAR10Folder(cifar_root, train=True, transform=lambda t: t * 2)
    assert len(train) == 10
    assert train.targets == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
    x, _ = train[1]
    assert torch.allclose(x, torch.from_numpy(first[1]).float() / 255 * 2)


def test_cifar_nested_folder(cifar_root, tmp_path_factory):
    outer = tmp_path_factory.mktemp("outer")
    os.rename(cifar_root, outer / "cifar-10-batches-py")
    assert len(D.CIFAR10Folder(outer, train=False)) == 1


def test_cifar_missing_files(tmp_path):
    (tmp_path / "test_batch").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        D.CIFAR10Folder(tmp_path, train=True)
    with pytest.raises(FileNotFoundError, match="root"):
        D.CIFAR10Folder(tmp_path / "nope")


@pytest.mark.parametrize("content", [
    b"\x80\x02garbage",
    pickle.dumps([1, 2, 3]),
    pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}),
    pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}),
    pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}),
    pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}),
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]}),
], ids=["truncated", "not-dict", "no-labels", "bad-shape", "bad-dtype", "count-mismatch", "bad-label"])
def test_cifar_corrupted_file(tmp_path, content):
    (tmp_path / "test_batch").write_bytes(content)
    with pytest.raises(ValueError, match="test_batch"):
        D.CIFAR10Folder(tmp_path, train=False)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_cifar_refuses_foreign_globals(tmp_path):
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="not allowed"):
        D.CIFAR10Folder(tmp_path, train=False)


def test_cifar_empty_batch_of_protocol_2_and_undecodable_class_names(tmp_path):
    # protocol 2 writes empty bytes as a call of the bytes type, which the allow-list must resolve
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((0, 3072), np.uint8), b"labels": []},
                                                       protocol=2))
    assert len(D.CIFAR10Folder(tmp_path, train=False)) == 0
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"\xff\xfe"] * 10}, f, protocol=2)
    with pytest.raises(ValueError, match="batches.meta: a class name in b'label_names' is not UTF-8"):
        D.CIFAR10Folder(tmp_path, train=False)


# ------------------------------------------------------------------------------------------------ MNIST

def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compressed", [False, True])
def test_mnist_idx_round_trip(tmp_path, compressed):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 7], dtype=np.uint8)
    suffix = ".gz" if compressed else ""
    opener = gzip.open if compressed else open
    with opener(tmp_path / f"t10k-images-idx3-ubyte{suffix}", "wb") as f:
        f.write(_idx_bytes(images, 2051))
    with opener(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", "wb") as f:
        f.write(_idx_bytes(labels, 2049))
    ds = D.MNISTFolder(tmp_path, train=False)
    assert len(ds) == 4
    for k in range(4):
        x, y = ds[k]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        assert y == int(labels[k])
        assert torch.allclose(x[0], torch.from_numpy(images[k].astype(np.float32)) / 255)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.MNISTFolder(tmp_path, train=True)


@pytest.mark.parametrize("which, content, word", [
    ("images", _idx_bytes(np.zeros((2, 28, 28), np.uint8), 2049), "magic"),
    ("labels", _idx_bytes(np.zeros(2, np.uint8), 2051), "magic"),
    ("images", _idx_bytes(np.zeros((2, 28, 28), np.uint8), 2051)[:-5], "sizes"),
    ("labels", _idx_bytes(np.zeros(3, np.uint8), 2049), "labels"),
    ("labels", b"\x00\x00", "short"),
])
def test_mnist_bad_files(tmp_path, which, content, word):
    good = {"images": _idx_bytes(np.zeros((2, 28, 28), np.uint8), 2051),
            "labels": _idx_bytes(np.zeros(2, np.uint8), 2049)}
    good[which] = content
    (tmp_path / "train-images-idx3-ubyte").write_bytes(good["images"])
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(good["labels"])
    with pytest.raises(ValueError, match=word):
        D.MNISTFolder(tmp_path)


# ------------------------------------------------------------------------------------------------ image folder

def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[1, 2] = (255, 0, 51)
    (tmp_path / "zebra").mkdir()
    (tmp_path / "ant" / "sub").mkdir(parents=True)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "zebra" / "a.png")
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    Image.fromarray(grey, mode="L").save(tmp_path / "ant" / "sub" / "b.PNG")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    ds = D.ImageFolderDataset(tmp_path)
    assert ds.classes == ["ant", "zebra"] and ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert len(ds) == 2
    x0, y0 = ds[0]
    assert y0 == 0 and x0.shape == (1, 4, 5)
    assert torch.allclose(x0[0], torch.from_numpy(grey).float() / 255)
    x1, y1 = ds[1]
    assert y1 == 1 and x1.shape == (3, 4, 5)
    expected = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    assert torch.allclose(x1, expected)
    assert torch.allclose(x1[:, 1, 2], torch.tensor([1.0, 0.0, 0.2]))
    flipped = D.ImageFolderDataset(tmp_path, transform=lambda t: torch.flip(t, (2,)))
    assert torch.equal(flipped[1][0], torch.flip(expected, (2,)))


def test_image_folder_reads_16_bit_and_float_greyscale(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    deep = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)  # up to 57000: far beyond 8 bits
    (tmp_path / "deep").mkdir()
    Image.fromarray(deep).save(tmp_path / "deep" / "a.png")
    with Image.open(tmp_path / "deep" / "a.png") as img:
        assert img.mode in ("I;16", "I")  # Pillow's modes for a 16-bit greyscale PNG
    x, _ = D.ImageFolderDataset(tmp_path)[0]
    assert x.shape == (1, 4, 5)
    assert torch.allclose(x[0], torch.from_numpy(deep.astype(np.float64) / 65535).float())
    (tmp_path / "deep" / "a.png").unlink()
    flt = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    Image.fromarray(flt).save(tmp_path / "deep" / "b.tiff")
    ds = D.ImageFolderDataset(tmp_path, extensions=(".tiff",))
    assert torch.equal(ds[0][0][0], torch.from_numpy(flt))
    Image.fromarray(flt * 3).save(tmp_path / "deep" / "b.tiff")
    with pytest.raises(ValueError, match=r"b.tiff: float image \(mode 'F'\) with values outside \[0, 1\]"):
        ds[0]


def test_image_folder_errors(tmp_path):
    pytest.importorskip("PIL")
    with pytest.raises(ValueError, match="no class subfolders"):
        D.ImageFolderDataset(tmp_path)
    (tmp_path / "cls").mkdir()
    with pytest.raises(ValueError, match="holds no file"):
        D.ImageFolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="root"):
        D.ImageFolderDataset(tmp_path / "missing")


def test_image_folder_without_pillow(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install pillow"):
        D.ImageFolderDataset(tmp_path)


# ------------------------------------------------------------------------------------------------ augmentation

def test_random_crop_shape_and_offsets():
    x = torch.arange(3 * 8 * 6, dtype=torch.float32).reshape(3, 8, 6)
    aug = D.random_crop_flip(padding=2, flip=False, generator=torch.Generator().manual_seed(0))
    padded = torch.zeros(3, 12, 10)
    padded[:, 2:10, 2:8] = x
    windows = {padded[:, i:i + 8, j:j + 6].numpy().tobytes() for i in range(5) for j in range(5)}
    for _ in range(20):
        y = aug(x)
        assert y.shape == x.shape
        assert y.numpy().tobytes() in windows


def test_flip_matches_torch_flip_with_seeded_generator():
    x = torch.rand(3, 5, 7)
    aug = D.random_crop_flip(padding=0, flip=True, generator=torch.Generator().manual_seed(123))
    reference = torch.Generator().manual_seed(123)
    n_flipped = 0
    for _ in range(40):
        flip = bool(torch.rand((), generator=reference) < 0.5)
        y = aug(x)
        expected = torch.flip(x, dims=(2,)) if flip else x
        assert torch.equal(y, expected)
        n_flipped += flip
    assert 0 < n_flipped < 40


def test_reflect_padding_region():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    aug = D.random_crop_flip(padding=2, flip=False, padding_mode="reflect",
                             generator=torch.Generator().manual_seed(0))
    # Reflect (without repeating the edge) written out by hand: index -k maps to k, H-1+k maps to H-1-k.
    def src(i, n):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)
    seen = set()
    for _ in range(60):
        y = aug(x)
        matched = False
        for top in range(5):
            for left in range(5):
                exp = torch.tensor([[x[0, src(top - 2 + i, 4), src(left - 2 + j, 4)] for j in range(4)]
                                    for i in range(4)])
                if torch.equal(y[0], exp):
                    matched = True
                    seen.add((top, left))
        assert matched
    assert len(seen) > 5
    corner = torch.tensor([[x[0, src(i - 2, 4), src(j - 2, 4)] for j in range(4)] for i in range(4)])
    assert corner[0, 0] == x[0, 2, 2]  # the reflected corner mirrors the interior, not the edge


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), padding=st.integers(0, 4), h=st.integers(5, 9), w=st.integers(5, 9),
       mode=st.sampled_from(["zeros", "reflect"]))
def test_crop_flip_shape_and_determinism(seed, padding, h, w, mode):
    x = torch.rand(2, h, w, generator=torch.Generator().manual_seed(seed))
    a = D.random_crop_flip(padding, generator=torch.Generator().manual_seed(seed), padding_mode=mode)
    b = D.random_crop_flip(padding, generator=torch.Generator().manual_seed(seed), padding_mode=mode)
    c = D.random_crop_flip(padding, generator=seed, padding_mode=mode)
    ya, yb, yc = a(x), b(x), c(x)
    assert ya.shape == x.shape and torch.equal(ya, yb) and torch.equal(ya, yc)


def test_augmentation_validation():
    with pytest.raises(ValueError, match="padding"):
        D.random_crop_flip(padding=-1)
    with pytest.raises(ValueError, match="padding_mode"):
        D.random_crop_flip(padding_mode="edge")
    with pytest.raises(TypeError, match="generator"):
        D.random_crop_flip(generator="0")
    with pytest.raises(ValueError, match="padding"):
        D.random_crop_flip(padding=4, padding_mode="reflect")(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match=r"^x: expected a \[C, H, W\] tensor, got \(3, 3\)$"):
        D.random_crop_flip()(torch.zeros(3, 3))


def test_normalize():
    x = torch.rand(3, 4, 4)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    y = D.normalize(mean, std)(x)
    for c in range(3):
        assert torch.allclose(y[c], (x[c] - mean[c]) / std[c])
    assert torch.allclose(D.normalize(0.5, 0.25)(x), (x - 0.5) / 0.25)
    with pytest.raises(ValueError, match="std"):
        D.normalize([0.0, 0.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="std"):
        D.normalize([0.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="channels"):
        D.normalize([0.0, 0.0], [1.0, 1.0])(x)


def test_resize_center_crop():
    x = torch.arange(2 * 4 * 8, dtype=torch.float32).reshape(2, 4, 8)
    # the shorter side is already 4: only the central 4 columns are cut
    assert torch.equal(D.ResizeCenterCrop(4)(x), x[:, :, 2:6])
    # a constant image stays constant at any scale; the output is square
    y = D.ResizeCenterCrop(6)(torch.full((3, 5, 9), 0.25))
    assert y.shape == (3, 6, 6) and torch.allclose(y, torch.full_like(y, 0.25))
    with pytest.raises(ValueError, match="size"):
        D.ResizeCenterCrop(0)
    composed = D.Compose(D.ResizeCenterCrop(4), None, D.normalize(0.5, 2.0))
    assert torch.allclose(composed(x), (x[:, :, 2:6] - 0.5) / 2.0)


def _coordinates(h, w):
    """A two-channel image whose pixels hold their own row and column."""
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    return torch.stack([rows, cols])


def test_random_resized_crop_cuts_windows_of_the_allowed_areas_and_ratios():
    h, w = 60, 90
    t = D.RandomResizedCropFlip(16, generator=3)
    areas, ratios, flips = [], [], 0
    for _ in range(300):
        top, left, ch, cw = t.window(h, w)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        areas.append(ch * cw / (h * w))
        ratios.append(cw / ch)
    # rounding the sides to pixels moves the area and ratio a little past the drawn ones
    assert 0.08 * 0.9 <= min(areas) and max(areas) <= 1.0
    assert 0.75 * 0.9 <= min(ratios) and max(ratios) <= 4 / 3 * 1.1
    assert max(areas) - min(areas) > 0.6  # the whole range is drawn, not one size
    # the output is the window, resized: its row / column channels span the window's rows / columns
    x = _coordinates(h, w)
    for seed in range(20):
        top, left, ch, cw = D.RandomResizedCropFlip(16, generator=seed).window(h, w)
        y = D.RandomResizedCropFlip(16, generator=seed)(x)
        assert y.shape == (2, 16, 16)
        assert top - 0.5 <= y[0].min() and y[0].max() <= top + ch - 0.5
        assert left - 0.5 <= y[1].min() and y[1].max() <= left + cw - 0.5
        flipped = bool(y[1, 0, 0] > y[1, 0, -1])
        flips += flipped
        reference = torch.nn.functional.interpolate(x[None, :, top:top + ch, left:left + cw], size=(16, 16),
                                                    mode="bilinear", align_corners=False, antialias=True)[0]
        torch.testing.assert_close(y, reference.flip(2) if flipped else reference)
    assert 0 < flips < 20


def test_random_resized_crop_falls_back_to_the_central_window():
    # a window of the whole area at ratio 1 never fits a 10 x 40 image: the central window of ratio 4/3
    t = D.RandomResizedCropFlip(8, scale=(1.0, 1.0), ratio=(1.0, 4 / 3), flip=False, generator=0)
    assert t.window(10, 40) == (0, 13, 10, 13)
    assert t.window(40, 10) == (15, 0, 10, 10)
    with pytest.raises(ValueError, match="scale"):
        D.RandomResizedCropFlip(8, scale=(0.5, 2.0))
    with pytest.raises(ValueError, match="ratio"):
        D.RandomResizedCropFlip(8, ratio=(2.0, 1.0))
    with pytest.raises(TypeError, match="scale"):
        D.RandomResizedCropFlip(8, scale=0.5)
    with pytest.raises(ValueError, match="size"):
        D.RandomResizedCropFlip(0)
