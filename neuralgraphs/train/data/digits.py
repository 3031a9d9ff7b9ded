"""scikit-learn's bundled 8x8 digits as tensors and loaders, with a seeded stratified split.

scikit-learn is an optional extra, imported by :func:`load_digits_dataset` when it runs.
"""

from __future__ import annotations

import numbers
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from neuralgraphs._checks import check_bool, check_int

__all__ = ["load_digits_dataset", "digits_loaders"]


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
    seed = check_int("seed", seed, minimum=0)
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
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    train_set = load_digits_dataset("train", seed=seed, as_images=as_images)
    test_set = load_digits_dataset("test", seed=seed, as_images=as_images)
    generator = torch.Generator()
    generator.manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator,
                              num_workers=num_workers)
    test_loader = DataLoader(test_set, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return train_loader, test_loader
