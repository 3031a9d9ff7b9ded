"""MNIST (or a drop-in such as Fashion-MNIST) read from the original IDX files, optionally gzip-compressed."""

from __future__ import annotations

import gzip
import os
import struct
from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from neuralgraphs._checks import check_bool, check_folder, check_optional_callable

from .transforms import Transform

__all__ = ["MNISTFolder"]

PathLike = Union[str, "os.PathLike[str]"]

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
        root = check_folder("root", root)
        self.train = check_bool("train", train)
        self.transform = check_optional_callable("transform", transform)
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
