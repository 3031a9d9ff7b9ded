"""Small, offline data sets and tensor augmentations for the training layer.

Everything here reads local files only; nothing is downloaded. scikit-learn (for the bundled digits) and
Pillow (for image folders) are optional extras imported inside the functions that need them.

Four sources are supported:

* scikit-learn's bundled 8x8 digits (:func:`load_digits_dataset`, :func:`digits_loaders`),
* CIFAR-10 in the official "python version" layout (:class:`CIFAR10Folder`),
* MNIST in the original IDX layout, optionally gzip-compressed (:class:`MNISTFolder`),
* class-per-subfolder image trees (:class:`ImageFolderDataset`).

Augmentations (:func:`random_crop_flip`, :func:`normalize`) act on ``[C, H, W]`` float tensors, so no
torchvision is needed.
"""

from __future__ import annotations

import codecs
import gzip
import numbers
import os
import pickle
import struct
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from neuralgraphs._checks import check_bool

__all__ = [
    "load_digits_dataset",
    "digits_loaders",
    "CIFAR10Folder",
    "MNISTFolder",
    "ImageFolderDataset",
    "RandomCropFlip",
    "Normalize",
    "random_crop_flip",
    "normalize",
]

PathLike = Union[str, "os.PathLike[str]"]
Transform = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------

def _check_int(name: str, value, minimum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def _check_root(root) -> str:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root: expected a str or os.PathLike folder path, got {type(root).__name__}")
    root = os.fspath(root)
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise ValueError(f"root: expected a folder, got the non-folder path {root!r}")
        raise FileNotFoundError(f"root: folder {root!r} does not exist")
    return root


def _check_transform(transform) -> Optional[Transform]:
    if transform is not None and not callable(transform):
        raise TypeError(f"transform: expected a callable or None, got {type(transform).__name__}")
    return transform


# ----------------------------------------------------------------------------------------------------------
# scikit-learn digits
# ----------------------------------------------------------------------------------------------------------

def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Per-class shuffled split; each class sends ``round(n_c * test_fraction)`` samples to test."""
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(members.size)]
        n_test = int(round(members.size * test_fraction))
        # Keep at least one sample of every class on each side whenever the class can afford it.
        if members.size >= 2:
            n_test = min(max(n_test, 1), members.size - 1)
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train_idx = np.sort(np.concatenate(train_parts))
    test_idx = np.sort(np.concatenate(test_parts))
    return train_idx, test_idx


def load_digits_dataset(split: str = "train", test_fraction: float = 0.25, seed: int = 0,
                        as_images: bool = True, normalize: bool = True) -> TensorDataset:
    """The 1797 bundled 8x8 handwritten digits of scikit-learn as a ``TensorDataset``.

    The split is stratified: every class is shuffled with ``numpy.random.default_rng(seed)`` and
    ``round(n_class * test_fraction)`` of its samples go to the test split, so class proportions agree
    between the splits to within one sample, the two splits are disjoint and together cover the whole set,
    and the same seed always gives the same split. Pixels (integers 0..16) are scaled to ``[0, 1]``; with
    ``normalize=True`` they are then standardised with the scalar mean and standard deviation of the
    *train* split, and the test split reuses those statistics (its own mean is therefore not exactly 0).

    Args:
        split (str): ``"train"`` or ``"test"``. (default: ``"train"``)
        test_fraction (float): fraction of each class held out for test, in (0, 1). (default: ``0.25``)
        seed (int): seed of the split. (default: ``0``)
        as_images (bool): ``True`` gives inputs of shape ``[1, 8, 8]``, ``False`` flat ``[64]`` vectors.
            (default: ``True``)
        normalize (bool): standardise with the train statistics after scaling to ``[0, 1]``.
            (default: ``True``)

    Returns:
        TensorDataset: ``(x, y)`` pairs, ``x`` float32, ``y`` int64 in 0..9.

    Raises:
        ValueError: if ``split`` or ``test_fraction`` is out of range.
        TypeError: if an argument has the wrong type.
        ImportError: if scikit-learn is not installed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction: expected a float in (0, 1), got {type(test_fraction).__name__}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction: expected a float in the open interval (0, 1), got {test_fraction}")
    seed = _check_int("seed", seed, minimum=0)
    as_images = check_bool("as_images", as_images)
    normalize = check_bool("normalize", normalize)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits_dataset needs scikit-learn: pip install scikit-learn") from exc

    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float64) / 16.0  # digits pixels are integers 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = _stratified_split(labels, float(test_fraction), seed)
    if normalize:
        train_pixels = pixels[train_idx]
        mean = float(train_pixels.mean())
        std = float(train_pixels.std())
        pixels = (pixels - mean) / std
    idx = train_idx if split == "train" else test_idx
    x = torch.from_numpy(pixels[idx].astype(np.float32))
    if as_images:
        x = x.reshape(-1, 1, 8, 8)
    y = torch.from_numpy(labels[idx])
    return TensorDataset(x, y)


def digits_loaders(batch_size: int = 64, seed: int = 0, as_images: bool = True,
                   num_workers: int = 0) -> Tuple[DataLoader, DataLoader]:
    """Train and test loaders over :func:`load_digits_dataset` (default split, normalised).

    The train loader shuffles with a ``torch.Generator`` seeded by ``seed`` (so the batch order is
    reproducible); the test loader keeps a fixed order. ``seed`` also fixes the split.

    Args:
        batch_size (int): samples per batch, positive. (default: ``64``)
        seed (int): seed of the split and of the shuffling. (default: ``0``)
        as_images (bool): ``[1, 8, 8]`` images or flat ``[64]`` vectors. (default: ``True``)
        num_workers (int): loader worker processes, ``>= 0``. (default: ``0``)

    Returns:
        tuple: ``(train_loader, test_loader)``.
    """
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    seed = _check_int("seed", seed, minimum=0)
    num_workers = _check_int("num_workers", num_workers, minimum=0)
    train_set = load_digits_dataset("train", seed=seed, as_images=as_images)
    test_set = load_digits_dataset("test", seed=seed, as_images=as_images)
    generator = torch.Generator()
    generator.manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator,
                              num_workers=num_workers)
    test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return train_loader, test_loader


# ----------------------------------------------------------------------------------------------------------
# CIFAR-10, official python version
# ----------------------------------------------------------------------------------------------------------

def _numpy_unpickle_globals() -> Dict[Tuple[str, str], object]:
    # The official batches were written by Python 2 with numpy < 2, new copies may come from numpy 2; map
    # both module spellings onto whatever this numpy provides without touching the deprecated numpy.core.
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core import multiarray, numeric
    table: Dict[Tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
        # protocol 2 writes an empty bytes object as a call of the bytes type
        ("__builtin__", "bytes"): bytes,
        ("builtins", "bytes"): bytes,
    }
    for prefix in ("numpy.core", "numpy._core"):
        table[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the few numpy globals plain uint8 arrays need.

    This narrows what a hostile file can make the loader call, but pickle is not a safe format: read only
    files from a source you trust.
    """

    _allowed = None

    def find_class(self, module: str, name: str):
        if _NumpyOnlyUnpickler._allowed is None:
            _NumpyOnlyUnpickler._allowed = _numpy_unpickle_globals()
        try:
            return _NumpyOnlyUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed in a CIFAR-10 batch file") from None


def _load_cifar_pickle(path: str):
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"{path}: not a readable CIFAR-10 python-version pickle ({exc})") from exc


def _validate_cifar_batch(path: str, obj) -> Tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    missing = [key for key in (b"data", b"labels") if key not in obj]
    if missing:
        raise ValueError(f"{path}: the pickled dict lacks the keys {missing}; found {sorted(map(repr, obj))}")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = (f"array of dtype {data.dtype} and shape {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise ValueError(f"{path}: b'data' must be a uint8 array of shape [n, 3072], found {desc}")
    raw_labels = obj[b"labels"]
    if isinstance(raw_labels, np.ndarray):
        ok = raw_labels.ndim == 1 and np.issubdtype(raw_labels.dtype, np.integer)
        labels = raw_labels.astype(np.int64) if ok else None
    elif isinstance(raw_labels, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in raw_labels):
        labels = np.asarray(raw_labels, dtype=np.int64).reshape(-1)
    else:
        labels = None
    if labels is None:
        raise ValueError(f"{path}: b'labels' must be a list or 1-d array of ints, found "
                         f"{type(raw_labels).__name__}")
    if labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels must lie in 0..9, found range {labels.min()}..{labels.max()}")
    return data, labels


class CIFAR10Folder(Dataset):
    """CIFAR-10 read from a local copy of the official "python version".

    The folder (or its ``cifar-10-batches-py`` subfolder) must hold ``data_batch_1`` .. ``data_batch_5``
    (train) or ``test_batch`` (test); ``batches.meta`` is read for the class names when present. Each batch
    is a pickled dict whose ``b"data"`` is a uint8 array ``[n, 3072]`` stored channel-major (1024 red bytes,
    then green, then blue, each row-major over 32 x 32) and whose ``b"labels"`` holds n ints in 0..9.

    Warning:
        The official format is Python pickle, and unpickling can execute code. The files are read with an
        unpickler that only resolves the numpy names a plain array needs, and the loaded structure is
        validated, but only read files that come from a source you trust.

    Args:
        root (str or os.PathLike): folder holding the batch files.
        train (bool): read the five training batches (50000 images) or the test batch. (default: ``True``)
        transform (callable, optional): applied to the ``[3, 32, 32]`` float tensor. (default: ``None``)

    Raises:
        FileNotFoundError: if ``root`` or a batch file is missing (the message lists the expected names).
        ValueError: if a file is not a well-formed batch (the message names the file).
    """

    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    meta_file = "batches.meta"
    default_classes = ("airplane", "automobile", "bird", "cat", "deer",
                       "dog", "frog", "horse", "ship", "truck")

    def __init__(self, root: PathLike, train: bool = True, transform: Optional[Transform] = None):
        root = _check_root(root)
        self.train = check_bool("train", train)
        self.transform = _check_transform(transform)
        names = self.train_files if self.train else self.test_files
        if not all(os.path.isfile(os.path.join(root, n)) for n in names):
            nested = os.path.join(root, "cifar-10-batches-py")
            if os.path.isdir(nested):
                root = nested
        missing = [n for n in names if not os.path.isfile(os.path.join(root, n))]
        if missing:
            raise FileNotFoundError(
                f"root: {root!r} lacks the CIFAR-10 files {missing}; expected {list(names)} "
                f"(plus optionally {self.meta_file!r}) from the official python-version archive")
        self.root = root
        images, labels = [], []
        for name in names:
            path = os.path.join(root, name)
            data, lab = _validate_cifar_batch(path, _load_cifar_pickle(path))
            images.append(data.reshape(-1, 3, 32, 32))
            labels.append(lab)
        self.data = np.ascontiguousarray(np.concatenate(images))  # uint8 [N, 3, 32, 32]
        self.targets: List[int] = np.concatenate(labels).tolist()
        self.classes = list(self._read_classes(os.path.join(root, self.meta_file)))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _read_classes(self, path: str) -> Sequence[str]:
        if not os.path.isfile(path):
            return self.default_classes
        meta = _load_cifar_pickle(path)
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if not isinstance(names, (list, tuple)) or len(names) != 10 or not all(
                isinstance(n, (bytes, str)) for n in names):
            raise ValueError(f"{path}: expected a dict with b'label_names' holding 10 names")
        try:
            return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: a class name in b'label_names' is not UTF-8 text ({exc})") from exc

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        image = torch.from_numpy(self.data[index]).to(torch.float32).div_(255.0)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


# ----------------------------------------------------------------------------------------------------------
# MNIST, IDX format
# ----------------------------------------------------------------------------------------------------------

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension


def _read_idx(path: str, magic: int) -> np.ndarray:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:  # a corrupt gzip stream surfaces as BadGzipFile (an OSError)
        raise ValueError(f"{path}: cannot read the IDX file ({exc})") from exc
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < 4:
        raise ValueError(f"{path}: file too short ({len(raw)} bytes) for an IDX header")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise ValueError(f"{path}: IDX magic number {found} (0x{found:08x}), expected {magic} (0x{magic:08x})")
    if len(raw) < header_size:
        raise ValueError(f"{path}: file too short ({len(raw)} bytes) for an IDX header of {header_size} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header_size
    if payload != expected:
        raise ValueError(f"{path}: header declares sizes {list(dims)} = {expected} bytes of data, "
                         f"but the file holds {payload}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


class MNISTFolder(Dataset):
    """MNIST (or any drop-in such as Fashion-MNIST) read from the original IDX files in a local folder.

    Expected names: ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` for training and
    ``t10k-images-idx3-ubyte`` / ``t10k-labels-idx1-ubyte`` for test, each optionally gzip-compressed with a
    ``.gz`` suffix (the uncompressed file wins when both exist). The IDX header is a big-endian magic number
    (2051 for images, 2049 for labels) followed by one big-endian uint32 per dimension.

    Args:
        root (str or os.PathLike): folder holding the IDX files.
        train (bool): training files or ``t10k`` files. (default: ``True``)
        transform (callable, optional): applied to the ``[1, H, W]`` float tensor. (default: ``None``)

    Raises:
        FileNotFoundError: if ``root`` or a file is missing (the message lists the expected names).
        ValueError: on a wrong magic number, inconsistent sizes or labels outside 0..9.
    """

    def __init__(self, root: PathLike, train: bool = True, transform: Optional[Transform] = None):
        root = _check_root(root)
        self.train = check_bool("train", train)
        self.transform = _check_transform(transform)
        prefix = "train" if self.train else "t10k"
        image_path = self._find(root, f"{prefix}-images-idx3-ubyte")
        label_path = self._find(root, f"{prefix}-labels-idx1-ubyte")
        images = _read_idx(image_path, _IDX_IMAGES_MAGIC)
        labels = _read_idx(label_path, _IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{image_path} holds {images.shape[0]} images but {label_path} holds "
                             f"{labels.shape[0]} labels")
        if labels.size and labels.max() > 9:
            raise ValueError(f"{label_path}: labels must lie in 0..9, found {int(labels.max())}")
        self.root = root
        self.data = images  # uint8 [N, H, W], read-only view of the file bytes
        self.targets: List[int] = labels.astype(np.int64).tolist()

    @staticmethod
    def _find(root: str, name: str) -> str:
        for candidate in (name, name + ".gz"):
            path = os.path.join(root, candidate)
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            f"root: {root!r} lacks {name!r} (or {name + '.gz'!r}); expected the IDX files "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte, each optionally with a .gz suffix")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        image = torch.tensor(self.data[index], dtype=torch.float32).div_(255.0).unsqueeze(0)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


# ----------------------------------------------------------------------------------------------------------
# class-per-subfolder images
# ----------------------------------------------------------------------------------------------------------

def _import_pil():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError("ImageFolderDataset needs Pillow to read images: pip install pillow") from exc
    return Image


class ImageFolderDataset(Dataset):
    """Images stored one class per subfolder, ``root/<class>/**/<image>``.

    Classes are the immediate subfolders of ``root`` in sorted order (``class_to_idx`` maps name to
    index); every file below a class folder whose lowercase name ends with one of ``extensions`` is a
    sample, in sorted path order. Images are read with Pillow: greyscale stays one channel (8-bit ``"L"`` and
    ``"1"`` scaled by 255; 16-bit ``"I;16*"`` and integer ``"I"`` by 65535; float ``"F"`` taken as is and
    required to lie in ``[0, 1]``), every other mode is converted to RGB (alpha is dropped). The sample is a
    float tensor ``[C, H, W]`` in ``[0, 1]``; ``transform``, if given, receives that tensor (not a PIL image), which is
    where resizing or cropping to a common size belongs when the images differ in size.

    Args:
        root (str or os.PathLike): the top folder.
        transform (callable, optional): applied to each ``[C, H, W]`` tensor. (default: ``None``)
        extensions (tuple of str): accepted file suffixes, case-insensitive.
            (default: ``(".png", ".jpg", ".jpeg", ".bmp", ".ppm")``)

    Raises:
        ImportError: if Pillow is not installed.
        ValueError: if ``root`` has no class subfolders or a class folder holds no image; when loading, if
            an integer image has values outside ``0..65535`` or a float image values outside ``[0, 1]``.
    """

    def __init__(self, root: PathLike, transform: Optional[Transform] = None,
                 extensions: Sequence[str] = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")):
        _import_pil()  # fail at construction, not in the first worker
        root = _check_root(root)
        self.transform = _check_transform(transform)
        if isinstance(extensions, str) or not isinstance(extensions, (tuple, list)) or not extensions or not all(
                isinstance(e, str) and e for e in extensions):
            raise TypeError(f"extensions: expected a non-empty tuple of suffixes such as ('.png',), "
                            f"got {extensions!r}")
        self.extensions = tuple(e.lower() for e in extensions)
        self.root = root
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        if not self.classes:
            raise ValueError(f"root: {root!r} contains no class subfolders")
        self.class_to_idx: Dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.samples: List[Tuple[str, int]] = []
        for cls in self.classes:
            found = []
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls), followlinks=True):
                dirnames.sort()
                for fname in sorted(filenames):
                    if fname.lower().endswith(self.extensions):
                        found.append((os.path.join(dirpath, fname), self.class_to_idx[cls]))
            if not found:
                raise ValueError(f"root: class folder {os.path.join(root, cls)!r} holds no file ending with "
                                 f"{list(self.extensions)}")
            self.samples.extend(found)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, path: str) -> torch.Tensor:
        """Read one image file as a float ``[C, H, W]`` tensor in ``[0, 1]``."""
        Image = _import_pil()
        with Image.open(path) as img:
            mode = img.mode
            if mode == "I" or mode.startswith("I;16"):
                # converting to "L" or "RGB" would clip 16-bit values at 255 (a white image)
                array = np.array(img).astype(np.float32)
                if array.size and (array.min() < 0 or array.max() > 65535):
                    raise ValueError(f"{path}: integer image (mode {mode!r}) with values outside 0..65535")
                array /= 65535.0
            elif mode == "F":
                array = np.array(img, dtype=np.float32)
                if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
                    raise ValueError(f"{path}: float image (mode 'F') with values outside [0, 1]")
            else:
                if mode == "1":
                    img = img.convert("L")
                elif mode not in ("L", "RGB"):
                    img = img.convert("RGB")
                array = np.array(img, dtype=np.uint8).astype(np.float32) / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = self.load(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


# ----------------------------------------------------------------------------------------------------------
# tensor augmentations
# ----------------------------------------------------------------------------------------------------------

def _check_image(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a [C, H, W] tensor, got {shape}")
    return x


class RandomCropFlip:
    """Pad, crop back to the original size at a random offset, then flip left-right with probability 1/2.

    See :func:`random_crop_flip`. A class rather than a closure so that it pickles into loader workers.
    """

    def __init__(self, padding: int = 4, flip: bool = True,
                 generator: Union[torch.Generator, int, None] = None, padding_mode: str = "zeros"):
        self.padding = _check_int("padding", padding, minimum=0)
        self.flip = check_bool("flip", flip)
        if padding_mode not in ("zeros", "reflect"):
            raise ValueError(f"padding_mode: expected 'zeros' or 'reflect', got {padding_mode!r}")
        self.padding_mode = padding_mode
        if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
            generator = torch.Generator().manual_seed(int(generator))
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, an int seed or None, got "
                            f"{type(generator).__name__}")
        self.generator = generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x)
        _, h, w = x.shape
        p = self.padding
        if p > 0:
            if self.padding_mode == "reflect":
                if p >= h or p >= w:
                    raise ValueError(f"padding: reflect padding needs padding < height and width, got "
                                     f"padding={p} for an image of {h}x{w}")
                padded = torch.nn.functional.pad(x.unsqueeze(0), (p, p, p, p), mode="reflect").squeeze(0)
            else:
                padded = torch.nn.functional.pad(x, (p, p, p, p), mode="constant", value=0.0)
            offsets = torch.randint(0, 2 * p + 1, (2,), generator=self.generator)
            top, left = int(offsets[0]), int(offsets[1])
            x = padded[:, top:top + h, left:left + w]
        if self.flip:
            if bool(torch.rand((), generator=self.generator) < 0.5):
                x = torch.flip(x, dims=(2,))
        return x.contiguous()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(padding={self.padding}, flip={self.flip}, "
                f"padding_mode={self.padding_mode!r})")


def random_crop_flip(padding: int = 4, flip: bool = True, generator: Union[torch.Generator, int, None] = None,
                     padding_mode: str = "zeros") -> RandomCropFlip:
    """The standard CIFAR augmentation on ``[C, H, W]`` tensors, without torchvision.

    The image is padded by ``padding`` pixels on every side, a window of the original size is cut at an
    offset drawn uniformly from ``{0, ..., 2 * padding}`` in each direction, and the result is mirrored
    left-right with probability 1/2. Zero padding is the recipe of the ResNet and DNW CIFAR papers
    (torchvision's ``RandomCrop(32, padding=4)``); ``padding_mode="reflect"`` mirrors the border instead.

    Random draws come from ``generator`` (an int seeds a fresh one; ``None`` uses torch's global
    generator). Note that a
    DataLoader with ``num_workers > 0`` copies the transform into every worker, so an explicit generator
    then yields the same draw sequence in each worker; keep ``generator=None`` there and rely on the
    per-worker seeding of the DataLoader.

    Args:
        padding (int): pixels added on each side, ``>= 0``; reflect needs it below height and width.
            (default: ``4``)
        flip (bool): apply the random horizontal flip. (default: ``True``)
        generator (torch.Generator or int, optional): source of randomness, or a seed for a new one.
            (default: ``None``)
        padding_mode (str): ``"zeros"`` or ``"reflect"``. (default: ``"zeros"``)

    Returns:
        RandomCropFlip: a callable mapping a ``[C, H, W]`` tensor to a tensor of the same shape.
    """
    return RandomCropFlip(padding=padding, flip=flip, generator=generator, padding_mode=padding_mode)


class Normalize:
    """Per-channel standardisation ``(x - mean[c]) / std[c]`` of a ``[C, H, W]`` tensor; see :func:`normalize`."""

    def __init__(self, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]):
        self.mean = self._as_list("mean", mean)
        self.std = self._as_list("std", std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"std: expected as many values as mean ({len(self.mean)}), got {len(self.std)}")
        bad = [s for s in self.std if not s > 0]
        if bad:
            raise ValueError(f"std: expected positive values, got {self.std}")

    @staticmethod
    def _as_list(name: str, value) -> List[float]:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            values = [float(value)]
        elif isinstance(value, (list, tuple, np.ndarray, torch.Tensor)) and len(value) > 0:
            values = [float(v) for v in value]
        else:
            raise TypeError(f"{name}: expected a float or a non-empty sequence of floats, got {value!r}")
        if not all(np.isfinite(values)):
            raise ValueError(f"{name}: expected finite values, got {values}")
        return values

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_image(x)
        if len(self.mean) not in (1, x.shape[0]):
            raise ValueError(f"x: has {x.shape[0]} channels but mean/std give {len(self.mean)} values")
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


def normalize(mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]) -> Normalize:
    """A callable standardising each channel of a ``[C, H, W]`` tensor: ``(x - mean[c]) / std[c]``.

    Args:
        mean (float or sequence of float): one value per channel, or one for all.
        std (float or sequence of float): positive, same length as ``mean``.

    Returns:
        Normalize: the callable.

    Raises:
        ValueError: if ``std`` is not positive or the lengths differ.
    """
    return Normalize(mean, std)
