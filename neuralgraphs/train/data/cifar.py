"""CIFAR-10 read from a local copy of the official "python version" (pickled batches).

The batches are unpickled with an unpickler that resolves only the numpy names a plain uint8 array needs,
and what it returns is validated before use.
"""

from __future__ import annotations

import codecs
import os
import pickle
import struct
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from neuralgraphs._checks import check_bool, check_folder, check_optional_callable

from .transforms import Transform

__all__ = ["CIFAR10Folder"]

PathLike = Union[str, "os.PathLike[str]"]


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
        root = check_folder("root", root)
        self.train = check_bool("train", train)
        self.transform = check_optional_callable("transform", transform)
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
