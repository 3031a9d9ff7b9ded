"""Tests of :mod:`neuralgraphs.viz`.

Each plot is checked twice: the figure (captured by a spy on ``viz._save`` that still saves it) must show
the numbers it was given -- bar heights, error bars and seed dots against the accuracies in percent, curve
points against per-epoch means over seeds computed here, histogram bars against degree counts taken from
networkx's adjacency matrix with numpy -- and the file must be a real PNG: the signature bytes, the IHDR
and pHYs chunks parsed here, and ``matplotlib.image.imread`` agreeing with them and with the figure size.
"""

import os
import struct
import zlib
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # no display; viz itself draws on its own Agg canvas

import matplotlib.image as mpimg  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402

from neuralgraphs import viz  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """Every figure a viz function saves, in order; the real ``_save`` still runs."""
    seen = []
    real = viz._save

    def spy(fig, path):
        seen.append(fig)
        return real(fig, path)

    monkeypatch.setattr(viz, "_save", spy)
    return seen


def png_chunks(data):
    """``{type: [payload, ...]}`` of a PNG file, with every chunk's CRC verified."""
    assert data[:8] == PNG_SIGNATURE
    chunks, pos = {}, 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + payload) & 0xFFFFFFFF == crc, f"bad CRC in chunk {kind!r}"
        chunks.setdefault(kind.decode("ascii"), []).append(payload)
        pos += 12 + length
    assert pos == len(data)
    return chunks


def check_png(path, fig):
    """The file is a PNG of the figure's size at its stored resolution, and not blank."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    chunks = png_chunks(data)
    assert list(chunks)[0] == "IHDR" and "IEND" in chunks and "IDAT" in chunks
    width, height = struct.unpack(">II", chunks["IHDR"][0][:8])
    image = mpimg.imread(path)
    assert image.shape[:2] == (height, width)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    # pixels per metre, unit 1 = metre: the dpi the figure was rendered at
    ppm_x, ppm_y, unit = struct.unpack(">IIB", chunks["pHYs"][0])
    assert unit == 1 and ppm_x == ppm_y
    dpi = ppm_x * 0.0254
    w_in, h_in = fig.get_size_inches()
    assert width == pytest.approx(w_in * dpi, abs=1.5)
    assert height == pytest.approx(h_in * dpi, abs=1.5)
    assert width >= 300 and height >= 200  # a readable plot, not a thumbnail
    rgb = image[..., :3]
    assert (rgb < 0.9).any() and (rgb > 0.99).any()  # something is drawn on a light background
    return image


def axis(fig, xlabel=None, ylabel=None):
    """The one axes of ``fig`` whose x / y label contains the given text (case-insensitive)."""
    found = [ax for ax in fig.axes if (xlabel is None or xlabel in ax.get_xlabel().lower())
             and (ylabel is None or ylabel in ax.get_ylabel().lower())]
    assert len(found) == 1, [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    return found[0]


def texts(fig):
    """Every label and title of the figure, lower-cased, joined."""
    parts = []
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return " | ".join(parts).lower()


# ------------------------------------------------------------------------------------------ plot_compare

ROWS = [
    {"model": "ws", "acc_mean": 0.96, "acc_std": 0.01, "accuracies": [0.95, 0.96, 0.97]},
    {"model": "er", "acc_mean": 0.9, "acc_std": 0.05, "accuracies": [0.85, 0.90, 0.95]},
    {"model": "dnw", "acc_mean": 0.75, "acc_std": 0.02},  # no per-seed values: no dots
]


@pytest.mark.parametrize("wrap", ["rows", "compare_dict", "tuple"])
def test_plot_compare_bars_errors_and_dots_show_the_accuracies(tmp_path, figures, wrap):
    results = {"rows": ROWS, "compare_dict": {"config": {}, "models": ROWS, "histories": {}},
               "tuple": tuple(ROWS)}[wrap]
    path = tmp_path / "accuracy.png"
    assert viz.plot_compare(results, path) == str(path)
    assert len(figures) == 1
    fig = figures[0]
    (ax,) = fig.axes

    means = [100 * r["acc_mean"] for r in ROWS]
    stds = [100 * r["acc_std"] for r in ROWS]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars.patches) == len(ROWS)
    centers = [p.get_x() + p.get_width() / 2 for p in bars.patches]
    assert [p.get_height() for p in bars.patches] == pytest.approx(means)
    assert all(p.get_y() == 0 for p in bars.patches)
    # one tick per bar, labelled with the model name
    assert list(ax.get_xticks()) == pytest.approx(centers)
    assert [t.get_text() for t in ax.get_xticklabels()] == [r["model"] for r in ROWS]

    # error bars from mean - std to mean + std at each bar
    segments = bars.errorbar.lines[2][0].get_segments()
    assert len(segments) == len(ROWS)
    for seg, c, m, s in zip(segments, centers, means, stds):
        assert seg[:, 0] == pytest.approx([c, c])
        assert sorted(seg[:, 1]) == pytest.approx([m - s, m + s])

    # the seeds as dots over their bar
    dots = [line for line in ax.lines if line.get_marker() == "o" and len(line.get_xdata())]
    assert len(dots) == 2
    for line, c, row in zip(dots, centers, ROWS):
        assert list(line.get_xdata()) == pytest.approx([c] * len(row["accuracies"]))
        assert list(line.get_ydata()) == pytest.approx([100 * a for a in row["accuracies"]])
    lo, hi = ax.get_ylim()
    assert hi == 100 and 0 <= lo <= min(m - s for m, s in zip(means, stds))
    assert all(lo <= y <= hi for line in dots for y in line.get_ydata())

    label = texts(fig)
    assert "accuracy" in label and "%" in ax.get_ylabel() and "std" in label
    check_png(path, fig)


def test_plot_compare_axis_floor_is_zero_for_low_accuracies(tmp_path, figures):
    rows = [{"model": "chance", "acc_mean": 0.1, "acc_std": 0.08}, {"model": "good", "acc_mean": 0.9,
                                                                     "acc_std": 0.01}]
    viz.plot_compare(rows, str(tmp_path / "low.png"))
    (ax,) = figures[0].axes
    assert ax.get_ylim() == pytest.approx((0.0, 100.0))
    assert [p.get_height() for p in ax.patches[:2]] == pytest.approx([10.0, 90.0])


@pytest.mark.parametrize("results,match", [
    ([], r"^results: expected a non-empty list"),
    ({"models": []}, r"^results: expected a non-empty list"),
    ({"runs": ROWS}, r"^results: expected a non-empty list"),  # a dict without "models"
    ("ws", r"^results: expected a non-empty list"),
    ([{"model": "a", "acc_mean": 0.5}], r"^results\[0\]: missing key\(s\) \['acc_std'\]"),
    ([ROWS[0], {"acc_mean": 0.5, "acc_std": 0.1}], r"^results\[1\]: missing key\(s\) \['model'\]"),
])
def test_plot_compare_rejects_bad_results(tmp_path, results, match):
    path = tmp_path / "x.png"
    with pytest.raises(ValueError, match=match):
        viz.plot_compare(results, path)
    assert not path.exists()


def test_plot_compare_rejects_bad_paths(tmp_path):
    with pytest.raises(TypeError, match=r"^path: expected a str or os.PathLike.*got int"):
        viz.plot_compare(ROWS, 3)
    missing = tmp_path / "no_such_folder" / "x.png"
    with pytest.raises(FileNotFoundError, match=r"^path: the folder .*no_such_folder"):
        viz.plot_compare(ROWS, missing)
    assert not missing.parent.exists()


# --------------------------------------------------------------------------------- plot_training_curves


def history(losses, accs):
    """A history in fit()'s format (one entry per epoch under each key)."""
    n = len(losses)
    return {"epoch": list(range(1, n + 1)), "train_loss": list(losses), "train_acc": [0.5] * n,
            "test_loss": [1.0] * n if accs is not None else [None] * n,
            "test_acc": list(accs) if accs is not None else [None] * n, "lr": [0.1] * n, "time": [1.0] * n}


def test_plot_training_curves_plots_the_mean_over_seeds(tmp_path, figures):
    seeds = [history([2.0, 1.0, 0.5, 0.25], [0.5, 0.6, 0.7, 0.8]),
             history([1.0, 0.8, 0.4, 0.15], [0.3, 0.5, 0.8, 0.9])]
    single = history([1.5, 0.9, 0.3], [0.4, 0.7, 0.95])
    path = tmp_path / "curves.png"
    assert viz.plot_training_curves({"dnw": seeds, "ws": single}, path) == str(path)
    fig = figures[0]
    assert len(fig.axes) == 2
    ax_loss, ax_acc = axis(fig, ylabel="loss"), axis(fig, ylabel="accuracy")
    assert "%" in ax_acc.get_ylabel()
    assert "epoch" in ax_loss.get_xlabel().lower() and "epoch" in ax_acc.get_xlabel().lower()

    expected_loss = {"dnw": [1.5, 0.9, 0.45, 0.2], "ws": [1.5, 0.9, 0.3]}
    expected_acc = {"dnw": [40.0, 55.0, 75.0, 85.0], "ws": [40.0, 70.0, 95.0]}
    for ax, expected in ((ax_loss, expected_loss), (ax_acc, expected_acc)):
        lines = {line.get_label(): line for line in ax.lines}
        assert set(lines) == set(expected)
        for name, ys in expected.items():
            assert list(lines[name].get_xdata()) == list(range(1, len(ys) + 1))  # epochs count from 1
            assert list(lines[name].get_ydata()) == pytest.approx(ys)
        legend = ax.get_legend()
        assert legend is not None and sorted(t.get_text() for t in legend.get_texts()) == sorted(expected)
    check_png(path, fig)


def test_plot_training_curves_mean_covers_the_epochs_all_seeds_have(tmp_path, figures):
    # an unfinished seed: the mean is over the epochs every seed reached
    runs = [history([1.0, 0.5, 0.2], [0.5, 0.6, 0.7]), history([3.0, 1.5], [0.7, 0.8])]
    viz.plot_training_curves({"dnw": runs}, tmp_path / "c.png")
    ax_loss, ax_acc = axis(figures[0], ylabel="loss"), axis(figures[0], ylabel="accuracy")
    assert list(ax_loss.lines[0].get_ydata()) == pytest.approx([2.0, 1.0])
    assert list(ax_acc.lines[0].get_ydata()) == pytest.approx([60.0, 70.0])


def test_plot_training_curves_without_test_accuracy_draws_no_accuracy_line(tmp_path, figures):
    # a model trained without a test loader has test_acc None at every epoch: no accuracy line for it
    hist = {"ws": history([1.0, 0.5], [0.5, 0.75]), "no_test": history([2.0, 1.0], None)}
    viz.plot_training_curves(hist, tmp_path / "c.png")
    ax_loss, ax_acc = axis(figures[0], ylabel="loss"), axis(figures[0], ylabel="accuracy")
    assert sorted(line.get_label() for line in ax_loss.lines) == ["no_test", "ws"]
    assert [line.get_label() for line in ax_acc.lines] == ["ws"]
    assert list(ax_acc.lines[0].get_ydata()) == pytest.approx([50.0, 75.0])


@pytest.mark.parametrize("histories,match", [
    ({}, r"^histories: expected a non-empty dict"),
    ([history([1.0], [0.5])], r"^histories: expected a non-empty dict"),
    ({"ws": 3}, r"^histories: each value must be a fit\(\) history"),
    ({"ws": [history([1.0], [0.5]), "x"]}, r"^histories: each value must be a fit\(\) history"),
])
def test_plot_training_curves_rejects_bad_histories(tmp_path, histories, match):
    path = tmp_path / "x.png"
    with pytest.raises(ValueError, match=match):
        viz.plot_training_curves(histories, path)
    assert not path.exists()


def test_plot_training_curves_rejects_bad_paths(tmp_path):
    h = {"ws": history([1.0, 0.5], [0.5, 0.6])}
    with pytest.raises(TypeError, match=r"^path: expected a str or os.PathLike.*got list"):
        viz.plot_training_curves(h, ["x.png"])
    with pytest.raises(FileNotFoundError, match=r"^path: the folder"):
        viz.plot_training_curves(h, os.path.join(str(tmp_path), "missing", "x.png"))


# ---------------------------------------------------------------------------- plot_degree_distributions


def degree_counts(g, axis):
    """``{degree: number of nodes}`` from networkx's adjacency matrix (row = source): column sums are
    in-degrees (``axis=0``), row sums out-degrees (``axis=1``); parallel edges counted once per edge."""
    a = nx.to_numpy_array(g, nodelist=list(g.nodes), multigraph_weight=sum, weight=None)
    degrees = a.sum(axis=axis).astype(int)
    hist = np.bincount(degrees) if degrees.size else np.zeros(0, dtype=int)
    return {d: int(c) for d, c in enumerate(hist) if c}


GRAPHS = {
    "ws": nx.DiGraph(nx.watts_strogatz_graph(20, 4, 0.3, seed=1)),  # each undirected edge both ways
    "er": nx.gnp_random_graph(25, 0.15, seed=2, directed=True),
    "star": nx.DiGraph([(0, i) for i in range(1, 9)]),  # out-degree 8 once, in-degree 1 eight times
}


@pytest.mark.parametrize("names", [["star"], ["ws", "er"], ["ws", "er", "star"]])
def test_plot_degree_distributions_bars_are_the_degree_histograms(tmp_path, figures, names):
    graphs = {n: GRAPHS[n] for n in names}
    path = tmp_path / "degrees.png"
    assert viz.plot_degree_distributions(graphs, path) == str(path)
    fig = figures[0]
    assert len(fig.axes) == 2
    ax_in, ax_out = axis(fig, xlabel="in-degree"), axis(fig, xlabel="out-degree")
    for ax, matrix_axis in ((ax_in, 0), (ax_out, 1)):
        containers = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [c.get_label() for c in containers] == names
        legend = ax.get_legend()
        assert legend is not None and [t.get_text() for t in legend.get_texts()] == names
        spans = {}
        for name, c in zip(names, containers):
            shown = {}
            for p in c.patches:
                center = p.get_x() + p.get_width() / 2
                degree = round(center)  # each graph's bar lies within 0.4 of its degree
                assert abs(center - degree) < 0.4
                assert p.get_x() >= degree - 0.4 - 1e-9 and p.get_x() + p.get_width() <= degree + 0.4 + 1e-9
                assert degree not in shown
                shown[degree] = p.get_height()
                spans.setdefault(degree, []).append((p.get_x(), p.get_x() + p.get_width()))
            assert shown == degree_counts(graphs[name], matrix_axis), (name, ax.get_xlabel())
        # bars of different graphs at one degree stand side by side, not on top of each other
        for intervals in spans.values():
            intervals.sort()
            assert all(a[1] <= b[0] + 1e-9 for a, b in zip(intervals, intervals[1:]))
    assert "nodes" in ax_in.get_ylabel().lower()
    check_png(path, fig)


def test_plot_degree_distributions_star_by_hand(tmp_path, figures):
    # hand-checked: the hub has in-degree 0 and out-degree 8, the 8 leaves in-degree 1 and out-degree 0
    viz.plot_degree_distributions({"star": GRAPHS["star"]}, tmp_path / "s.png")
    ax_in, ax_out = axis(figures[0], xlabel="in-degree"), axis(figures[0], xlabel="out-degree")
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in ax_in.patches}
    assert heights == {0: 1, 1: 8}
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in ax_out.patches}
    assert heights == {0: 8, 8: 1}


def test_plot_degree_distributions_rejects_bad_graphs(tmp_path):
    path = tmp_path / "x.png"
    with pytest.raises(ValueError, match=r"^graphs: expected a non-empty dict"):
        viz.plot_degree_distributions({}, path)
    with pytest.raises(ValueError, match=r"^graphs: expected a non-empty dict"):
        viz.plot_degree_distributions([GRAPHS["star"]], path)
    with pytest.raises(TypeError, match=r"^graphs\['undirected'\]: expected a networkx.DiGraph, got Graph"):
        viz.plot_degree_distributions({"ok": GRAPHS["star"], "undirected": nx.path_graph(3)}, path)
    with pytest.raises(TypeError, match=r"^path: expected a str or os.PathLike"):
        viz.plot_degree_distributions({"ok": GRAPHS["star"]}, None)
    assert not path.exists()


def test_figures_are_drawn_without_pyplot(tmp_path, figures):
    # the module docstring: no pyplot state is touched, so nothing needs closing and no figure leaks
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    viz.plot_compare(ROWS, tmp_path / "a.png")
    viz.plot_training_curves({"ws": history([1.0, 0.5], [0.5, 0.6])}, tmp_path / "b.png")
    viz.plot_degree_distributions({"star": GRAPHS["star"]}, tmp_path / "c.png")
    assert plt.get_fignums() == before
    assert len(figures) == 3
    for name, fig in zip("abc", figures):
        check_png(tmp_path / f"{name}.png", fig)
    plt.close("all")


@pytest.mark.parametrize("name", ["plot", "plot.pdf", "plot.svg"])
def test_every_plot_refuses_a_path_that_is_not_png(tmp_path, name):
    # matplotlib would append .png to a bare name (the returned path then names no file) or switch format
    path = tmp_path / name
    calls = [lambda: viz.plot_compare([{"model": "ws", "acc_mean": 0.9, "acc_std": 0.01}], path),
             lambda: viz.plot_training_curves({"ws": history([1.0], [0.5])}, path),
             lambda: viz.plot_degree_distributions({"g": nx.DiGraph([(0, 1)])}, path)]
    for call in calls:
        with pytest.raises(ValueError, match=r"^path: expected a file name ending in \.png"):
            call()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rows,error,match", [
    ([[1, 2]], TypeError, r"^results\[0\]: expected a dict"),
    ([{"model": "a", "acc_mean": "x", "acc_std": 0.1}], ValueError, r"^results\[0\]: acc_mean, acc_std"),
    ([{"model": "a", "acc_mean": 0.5, "acc_std": float("nan")}], ValueError, r"^results\[0\]: acc_mean"),
    ([{"model": "a", "acc_mean": 0.5, "acc_std": 0.1, "accuracies": [0.5, None]}], ValueError,
     r"^results\[0\]: acc_mean"),
])
def test_plot_compare_names_malformed_rows(tmp_path, rows, error, match):
    with pytest.raises(error, match=match):
        viz.plot_compare(rows, tmp_path / "a.png")


def test_plot_compare_keeps_a_low_seed_in_view(tmp_path, figures):
    accs = [0.1, 0.9, 0.9, 0.9, 0.9]
    mean, std = float(np.mean(accs)), float(np.std(accs, ddof=1))
    viz.plot_compare([{"model": "ws", "acc_mean": mean, "acc_std": std, "accuracies": accs}], tmp_path / "a.png")
    low, high = axis(figures[0]).get_ylim()
    assert low <= 10.0 < 90.0 <= high


def test_plot_training_curves_without_any_test_accuracy_or_with_zero_loss_warns_nothing(tmp_path, figures):
    # warnings are errors in this suite: an empty legend or a log axis over a zero would fail here
    viz.plot_training_curves({"a": history([1.0, 0.5], None)}, tmp_path / "a.png")
    ax_acc = axis(figures[0], ylabel="accuracy")
    assert len(ax_acc.lines) == 0 and ax_acc.get_legend() is None
    viz.plot_training_curves({"a": history([1.0, 0.0], [0.5, 1.0])}, tmp_path / "b.png")
    assert axis(figures[1], ylabel="loss").get_yscale() == "linear"
    assert axis(figures[0], ylabel="loss").get_yscale() == "log"
    with pytest.raises(ValueError, match=r"^histories\['a'\]: train_loss must hold numbers"):
        viz.plot_training_curves({"a": history(["x"], None)}, tmp_path / "c.png")


def test_plot_swaps(tmp_path):
    pytest.importorskip("matplotlib")
    path = viz.plot_swaps([0, 5, 10], {"graph": [0, 4, 2]}, tmp_path / "s.png")
    assert Path(path).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"swaps\['graph'\]: expected 3 values"):
        viz.plot_swaps([0, 5, 10], {"graph": [0, 4]}, tmp_path / "s.png")
    with pytest.raises(ValueError, match="swaps: expected a non-empty dict"):
        viz.plot_swaps([0], {}, tmp_path / "s.png")


def test_many_modules_are_drawn_as_their_sum(tmp_path, figures):
    # 30 modules (a sparse ResNet has 53): one series each left the axes no room beside a 30-name legend
    # (matplotlib warns "axes sizes collapsed to zero", an error in this suite)
    graphs = {f"layer{i}": nx.star_graph(3, create_using=nx.DiGraph) for i in range(30)}
    viz.plot_degree_distributions(graphs, tmp_path / "d.png")
    ax_in = axis(figures[0], xlabel="in-degree")
    (bars,) = [c for c in ax_in.containers if isinstance(c, BarContainer)]
    assert bars.get_label() == "all 30 modules"
    heights = {round(p.get_x() + p.get_width() / 2): p.get_height() for p in bars.patches}
    assert heights == {0: 30, 1: 90}  # per star: the hub has in-degree 0, its 3 leaves in-degree 1
    swaps = {f"layer{i}": [0, i, 1] for i in range(30)}
    viz.plot_swaps([0, 5, 10], swaps, tmp_path / "s.png")
    (line,) = figures[1].axes[0].get_lines()
    assert line.get_label() == "all 30 modules" and list(line.get_ydata()) == [sum(range(30)), 30]
    viz.plot_swaps([0, 5, 10], dict(list(swaps.items())[:viz.MAX_SERIES]), tmp_path / "s.png")
    assert len(figures[2].axes[0].get_lines()) == viz.MAX_SERIES
