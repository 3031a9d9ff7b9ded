"""Images stored one class per subfolder, read with Pillow (an optional extra imported when needed)."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from neuralgraphs._checks import check_folder, check_optional_callable

from .transforms import Transform

__all__ = ["ImageFolderDataset"]

PathLike = Union[str, "os.PathLike[str]"]


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
        root = check_folder("root", root)
        self.transform = check_optional_callable("transform", transform)
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
