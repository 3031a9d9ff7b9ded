"""Plots of comparison results, training curves and degree distributions (PNG files).

matplotlib is an optional extra (``pip install neuralgraphs[plot]``) imported only when a plot is drawn.
Figures are drawn with matplotlib's object-oriented API on an Agg canvas, so no pyplot state or global
backend is touched and the functions work without a display.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import Counter
from typing import Any, List, Mapping, Sequence, Union

import networkx as nx

__all__ = ["plot_compare", "plot_training_curves", "plot_degree_distributions", "plot_swaps", "MAX_SERIES"]

#: Most modules drawn as series of their own in :func:`plot_degree_distributions` and :func:`plot_swaps`; more
#: (the 53 sparse layers of a ResNet-50) are drawn as one series, their sum: bars 1/50 wide and a legend of
#: 50 names would not be readable, and the legend would leave the axes no room.
MAX_SERIES = 10

PathLike = Union[str, "os.PathLike[str]"]


def _figure(ncols: int = 1, width: float = 5.0, height: float = 3.6):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("neuralgraphs.viz needs matplotlib; install it with: pip install neuralgraphs[plot]") from exc
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _check_path(path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike file path, got {type(path).__name__}")
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        # matplotlib would append ".png" to a bare name, or write another format for another suffix
        raise ValueError(f"path: expected a file name ending in .png, got {path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: the folder {folder!r} of {path!r} does not exist")
    return path


def _save(fig, path: str) -> str:
    fig.savefig(path, dpi=110)
    return path


def plot_compare(results: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]], path: PathLike,
                 title: str = "test accuracy, mean ± std over seeds") -> str:
    """Bar chart of test accuracy per model, with one-standard-deviation error bars and the seeds as dots.

    Args:
        results: rows with ``model``, ``acc_mean`` and ``acc_std`` (optionally ``accuracies``, the per-seed
            values), or the dict written by ``neuralgraphs compare`` (its ``"models"`` rows are used).
        path (str or os.PathLike): PNG file to write; its folder must exist.
        title (str): the figure's title. (default: ``"test accuracy, mean ± std over seeds"``)

    Returns:
        str: ``path``.

    Raises:
        ValueError: if there are no rows or a row lacks a key.
        ImportError: if matplotlib is missing.
    """
    rows = results.get("models") if isinstance(results, Mapping) else results
    if not isinstance(rows, (list, tuple)) or not rows:
        raise ValueError("results: expected a non-empty list of rows with model, acc_mean and acc_std")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"results[{i}]: expected a dict with model, acc_mean and acc_std, got "
                            f"{type(row).__name__}")
        missing = [k for k in ("model", "acc_mean", "acc_std") if k not in row]
        if missing:
            raise ValueError(f"results[{i}]: missing key(s) {missing}")
        values = [row["acc_mean"], row["acc_std"], *row.get("accuracies", [])]
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise ValueError(f"results[{i}]: acc_mean, acc_std and accuracies must be finite numbers, got "
                             f"{values}")
    path = _check_path(path)
    fig, (ax,) = _figure()
    names = [str(r["model"]) for r in rows]
    means = [100 * float(r["acc_mean"]) for r in rows]
    stds = [100 * float(r["acc_std"]) for r in rows]
    xs = list(range(len(rows)))
    ax.bar(xs, means, yerr=stds, capsize=5, color="#8fb3d9", edgecolor="#2b5d8c")
    for x, r in zip(xs, rows):
        accs = [100 * float(a) for a in r.get("accuracies", [])]
        ax.plot([x] * len(accs), accs, "o", color="#1b3a57", markersize=3)
    ax.set_xticks(xs, names)
    dots = [100 * float(a) for r in rows for a in r.get("accuracies", [])]
    low = min([m - s for m, s in zip(means, stds)] + dots)  # every bar, error bar and seed stays in view
    ax.set_ylim(max(0.0, math.floor(low / 5) * 5 - 5), 100)
    ax.set_ylabel("test accuracy (%)")
    if not isinstance(title, str):
        raise TypeError(f"title: expected a str, got {type(title).__name__}")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _as_runs(value: Any) -> List[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, Mapping) for v in value):
        return list(value)
    raise ValueError("histories: each value must be a fit() history dict or a list of them (one per seed)")


def _mean_curve(runs: List[Mapping[str, Any]], key: str) -> List[float]:
    curves = [[v for v in run.get(key, []) if v is not None] for run in runs]
    length = min((len(c) for c in curves), default=0)
    return [sum(c[i] for c in curves) / len(curves) for i in range(length)]


def plot_training_curves(histories: Mapping[str, Any], path: PathLike) -> str:
    """Training loss and test accuracy per epoch, one line per model (the mean over its seeds).

    The loss axis is logarithmic when every plotted loss is positive.  A model without test accuracy (a
    ``fit`` without a test loader) gets a loss line only.

    Args:
        histories (dict): model name to a :func:`~neuralgraphs.train.fit` history, or a list of them.
        path (str or os.PathLike): PNG file to write; its folder must exist.

    Returns:
        str: ``path``.

    Raises:
        ValueError: if ``histories`` is empty or malformed.
        ImportError: if matplotlib is missing.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories: expected a non-empty dict of model name to fit() histories")
    runs = {str(name): _as_runs(value) for name, value in histories.items()}
    for name, rs in runs.items():
        for key in ("train_loss", "test_acc"):
            if not all(v is None or (isinstance(v, numbers.Real) and not isinstance(v, bool))
                       for run in rs for v in run.get(key, [])):
                raise ValueError(f"histories[{name!r}]: {key} must hold numbers (or None), as fit() writes")
    path = _check_path(path)
    fig, (ax_loss, ax_acc) = _figure(ncols=2)
    for name, rs in runs.items():
        loss = _mean_curve(rs, "train_loss")
        acc = _mean_curve(rs, "test_acc")
        ax_loss.plot(range(1, len(loss) + 1), loss, marker=".", label=name)
        if acc:
            ax_acc.plot(range(1, len(acc) + 1), [100 * a for a in acc], marker=".", label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    losses = [v for line in ax_loss.get_lines() for v in line.get_ydata()]
    if losses and min(losses) > 0:  # a log axis cannot show a loss of 0
        ax_loss.set_yscale("log")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_lines():  # an empty legend warns (no model had test accuracy, or no epoch at all)
            ax.legend(fontsize="small")
    return _save(fig, path)


def plot_degree_distributions(graphs: Mapping[str, nx.DiGraph], path: PathLike) -> str:
    """In- and out-degree histograms of several directed graphs, side by side.

    Args:
        graphs (dict): name to ``networkx.DiGraph`` (pass only the edges you want counted, e.g. the active
            ones); more than :data:`MAX_SERIES` are drawn as one histogram of all their nodes.
        path (str or os.PathLike): PNG file to write; its folder must exist.

    Returns:
        str: ``path``.

    Raises:
        TypeError: if a value is not a ``networkx.DiGraph``.
        ValueError: if ``graphs`` is empty.
        ImportError: if matplotlib is missing.
    """
    if not isinstance(graphs, Mapping) or not graphs:
        raise ValueError("graphs: expected a non-empty dict of name to networkx.DiGraph")
    for name, g in graphs.items():
        if not isinstance(g, nx.DiGraph):
            raise TypeError(f"graphs[{name!r}]: expected a networkx.DiGraph, got {type(g).__name__}")
    path = _check_path(path)
    fig, axes = _figure(ncols=2)
    series = {name: [g] for name, g in graphs.items()}
    if len(series) > MAX_SERIES:
        series = {f"all {len(graphs)} modules": list(graphs.values())}
    width = 0.8 / len(series)
    for ax, (title, degree) in zip(axes, (("in-degree", "in_degree"), ("out-degree", "out_degree"))):
        for i, (name, members) in enumerate(series.items()):
            counts = Counter(d for g in members for _, d in getattr(g, degree)())
            xs = sorted(counts)
            ax.bar([x - 0.4 + width * (i + 0.5) for x in xs], [counts[x] for x in xs], width=width, label=str(name))
        ax.set_xlabel(title)
        ax.set_ylabel("nodes")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_swaps(steps: Sequence[int], swaps: Mapping[str, Sequence[int]], path: PathLike) -> str:
    """Edges that entered the active set between consecutive records, against the training step.

    Args:
        steps (list of int): the step of every record.
        swaps (dict): module name to its swaps per record (``len(steps)`` values; the first, 0, is not drawn);
            more than :data:`MAX_SERIES` modules are drawn as one line, their sum.
        path (str or os.PathLike): PNG file to write; its folder must exist.

    Returns:
        str: ``path``.
    """
    steps = list(steps)
    if not isinstance(swaps, Mapping) or not swaps:
        raise ValueError("swaps: expected a non-empty dict of module name to swaps per record")
    for name, values in swaps.items():
        if len(values) != len(steps):
            raise ValueError(f"swaps[{name!r}]: expected {len(steps)} values (one per record), got {len(values)}")
    path = _check_path(path)
    fig, (ax,) = _figure()
    if len(swaps) > MAX_SERIES:
        swaps = {f"all {len(swaps)} modules": [sum(column) for column in zip(*swaps.values())]}
    for name, values in swaps.items():
        ax.plot(steps[1:], list(values)[1:], marker=".", label=str(name))
    ax.set_xlabel("step")
    ax.set_ylabel("edges entered since the previous record")
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize="small")
    return _save(fig, path)
