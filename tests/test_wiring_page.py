"""The wiring over training: the page's data against the model's own top-k (computed here), the page
itself (inline data, no network), the files of ``neuralgraphs train`` and, slow-marked, the page in a real
headless Chromium."""

import csv
import json
import os
import re
import shutil
import subprocess

import networkx as nx
import pytest
import torch

from neuralgraphs.analysis.history import WiringHistory
from neuralgraphs.analysis.page import wiring_page_data, write_wiring_page
from neuralgraphs.cli import main
from neuralgraphs.cli import train as train_cli
from neuralgraphs.dynamics import DiscreteTimeGraph, StaticGraph
from neuralgraphs.generators.candidates import complete_dag, complete_graph
from neuralgraphs.nodes import Activation
from neuralgraphs.train import load_checkpoint

K = 9


def _top_k(weight, k):
    """The k candidates of largest |w| (no ties: the weights are drawn from a continuous law)."""
    return set(torch.argsort(weight.detach().abs(), descending=True)[:k].tolist())


def _recorded(steps=4, module_cls=StaticGraph, graph=None):
    torch.manual_seed(0)
    graph = graph if graph is not None else complete_dag(8)
    module = module_cls(graph, Activation("tanh"), wiring="dnw", k=K, seed=1)
    history, expected = WiringHistory(), []
    for step in range(steps):
        with torch.no_grad():
            module.weight.copy_(torch.randn_like(module.weight))  # a new top-k each time
        history.record(module, step=10 * step, label=f"s{step}")
        src, dst = module.graph.edge_index
        expected.append({(int(src[e]), int(dst[e])) for e in _top_k(module.weight, K)})
    return module, history, expected


def test_page_data_holds_the_top_k_of_every_recorded_step():
    module, history, expected = _recorded()
    data = wiring_page_data(module, history, title="t")
    assert data["steps"] == [0, 10, 20, 30] and data["labels"] == ["s0", "s1", "s2", "s3"]
    (m,) = data["modules"]
    assert m["num_nodes"] == 8 and m["num_candidates"] == 28 and m["num_active"] == [K] * 4
    for i, edges in enumerate(expected):
        assert {tuple(m["edges"][e]) for e in m["active"][i]} == edges
    # swaps: edges of step i that were not active at step i - 1, counted from the sets above
    assert m["swaps"] == [0] + [len(b - a) for a, b in zip(expected, expected[1:])]
    # a DAG is drawn by longest-path level, left to right (networkx's own levels)
    dag = nx.DiGraph(module.graph.edge_index.t().tolist())
    level = {}
    for v in nx.topological_sort(dag):
        level[v] = max([level[u] + 1 for u in dag.predecessors(v)], default=0)
    depth = max(level.values())
    assert [p[0] for p in m["positions"]] == pytest.approx([level[v] / depth for v in range(8)], abs=1e-4)


def test_a_graph_with_cycles_is_drawn_on_a_circle():
    module, history, expected = _recorded(2, DiscreteTimeGraph, complete_graph(6, self_loops=False))
    (m,) = wiring_page_data(module, history)["modules"]
    radius = [((x - 0.5) ** 2 + (y - 0.5) ** 2) ** 0.5 for x, y in m["positions"]]
    assert radius == pytest.approx([0.5] * 6, abs=1e-3)
    assert {tuple(m["edges"][e]) for e in m["active"][1]} == expected[1]


def test_page_is_self_contained_and_carries_every_step(tmp_path):
    module, history, _ = _recorded()
    data = wiring_page_data(module, history, title="<run & co>")
    path = write_wiring_page(data, tmp_path / "wiring.html")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    embedded = re.search(r'<script id="wiring-data" type="application/json">(.*?)</script>', text, re.S).group(1)
    assert json.loads(embedded) == data
    assert "<title>&lt;run &amp; co&gt;</title>" in text
    # nothing is fetched: no external script, style, image or link
    assert not re.search(r'<(script|link|img|iframe)[^>]*(src|href)=', text)
    assert not os.path.exists(str(path) + ".tmp")


def test_page_bad_input():
    module, history, _ = _recorded(1)
    with pytest.raises(TypeError, match="model"):
        wiring_page_data("graph", history)
    with pytest.raises(TypeError, match="history"):
        wiring_page_data(module, [])
    with pytest.raises(ValueError, match="history: has no snapshot"):
        wiring_page_data(module, WiringHistory())
    other, _, _ = _recorded(1)
    wrapper = torch.nn.Sequential(other)  # its wired module is named "0", not ""
    with pytest.raises(ValueError, match="does not have"):
        wiring_page_data(wrapper, history)
    with pytest.raises(TypeError, match="data"):
        write_wiring_page({"x": 1}, "w.html")


def _train(out, *extra):
    return main(["train", "digits-static-dnw", "train.epochs=2", "record.every=7", *extra, "--out", str(out)])


def test_train_writes_the_wiring_record_page_and_final_graph(tmp_path):
    assert _train(tmp_path) == 0
    saved = load_checkpoint(tmp_path / "wiring.pt")
    steps_per_epoch = len(train_cli._loaders(train_cli.load_config("digits-static-dnw"))[0])
    expected = sorted({0, steps_per_epoch, 2 * steps_per_epoch} | set(range(7, 2 * steps_per_epoch + 1, 7)))
    assert saved["steps"] == expected
    text = (tmp_path / "wiring.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', text, re.S).group(1))
    assert data["steps"] == expected
    # the final graph: the top-k of the checkpoint's weights, computed here
    config = train_cli.load_config(str(tmp_path / "config.yaml"))
    model = train_cli.build_model(config)
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt")["model"])
    g = model.graph
    labels = g.graph.node_labels
    src, dst = g.graph.edge_index
    top = {(labels[int(src[e])], labels[int(dst[e])]) for e in _top_k(g.weight, g.wiring.num_active)}
    final = nx.read_graphml(tmp_path / "wiring-final-graph.graphml", node_type=int)
    assert set(final.edges) == top and final.number_of_nodes() == g.graph.num_nodes
    m = data["modules"][0]
    assert {(labels[u], labels[v]) for u, v in (m["edges"][e] for e in m["active"][-1])} == top
    assert (tmp_path / "wiring-swaps.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "wiring-degrees.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("where", ["mid-epoch", "after the wiring file"])
def test_resume_after_a_kill_gives_the_same_wiring_record(where, tmp_path, monkeypatch):
    assert _train(tmp_path / "whole") == 0
    whole = load_checkpoint(tmp_path / "whole" / "wiring.pt")
    if where == "mid-epoch":
        real = train_cli._WiringFiles.on_step_end

        def killed(self, model, step, loss):
            real(self, model, step, loss)
            if step == 35:  # a record was taken at step 35, in epoch 2, after the last checkpoint
                raise KeyboardInterrupt
        monkeypatch.setattr(train_cli._WiringFiles, "on_step_end", killed)
    else:
        real = train_cli._WiringFiles.on_epoch_end

        def killed(self, model, epoch, record):
            real(self, model, epoch, record)  # wiring.pt holds epoch 2, the checkpoint does not
            if epoch == 2:
                raise KeyboardInterrupt
        monkeypatch.setattr(train_cli._WiringFiles, "on_epoch_end", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "cut")
    monkeypatch.undo()
    assert _train(tmp_path / "cut", "--resume") == 0
    cut = load_checkpoint(tmp_path / "cut" / "wiring.pt")
    assert cut["steps"] == whole["steps"] and cut["labels"] == whole["labels"]
    a_hist, b_hist = WiringHistory(), WiringHistory()
    a_hist.load_state_dict(cut)
    b_hist.load_state_dict(whole)
    assert len(a_hist) == len(b_hist)
    for a, b in zip(a_hist.records, b_hist.records):
        assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def test_record_every_must_be_a_positive_int(capsys):
    for value, message in (("0", "record.every: expected a positive int"), ("two", "record.every: expected an int")):
        with pytest.raises(SystemExit):
            main(["train", "digits-static-dnw", f"record.every={value}", "--show"])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "digits-static-dnw", "record.often=3", "--show"])
    assert "unknown key record.often" in capsys.readouterr().err


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium installed (apt-get install chromium)")


def _browser(*args):
    base = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--window-size=900,1000"]
    return subprocess.run(base + list(args), capture_output=True, timeout=120, check=True)


@pytest.mark.slow
def test_the_slider_redraws_the_graph_in_a_real_browser(tmp_path):
    assert _train(tmp_path) == 0
    page = tmp_path / "wiring.html"
    data = json.loads(re.search(r'type="application/json">(.*?)</script>', page.read_text(encoding="utf-8"),
                                re.S).group(1))
    m = data["modules"][0]
    last = len(data["steps"]) - 1
    drawn = {}
    for i in (0, last):
        # ``#step=K`` sets the slider and fires its input event, the same handler a drag runs
        dom = _browser("--dump-dom", f"{page.as_uri()}#step={i}").stdout.decode()
        assert f'data-shown="{i}"' in dom
        edges = set(re.findall(r'class="edge"[^>]*data-source="(\d+)" data-target="(\d+)"', dom))
        drawn[i] = {(int(u), int(v)) for u, v in edges}
        assert drawn[i] == {tuple(m["edges"][e]) for e in m["active"][i]}
        assert dom.count('class="edge"') == m["num_active"][i]
    assert drawn[0] != drawn[last]  # the wiring moved, and the drawing with it
    shots = []
    for i in (0, last):
        out = tmp_path / f"shot{i}.png"
        _browser(f"--screenshot={out}", f"{page.as_uri()}#step={i}")
        shots.append(out.read_bytes())
    assert all(s[:4] == b"\x89PNG" for s in shots) and shots[0] != shots[1]


def test_inspect_a_run_folder(tmp_path, capsys):
    assert _train(tmp_path) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # the same figures the training wrote, from the checkpoint and the record
    assert f"test accuracy    {100 * float(rows[-1]['test_acc']):.2f} %" in out
    assert f"swaps per epoch  {[int(r['swapped']) for r in rows]}" in out
    model = train_cli.build_model(train_cli.load_config(str(tmp_path / "config.yaml")))
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt")["model"])
    k, e = model.graph.wiring.num_active, model.graph.graph.num_edges
    assert f"graph: {k} active of {e} candidates" in out
    # depth of the active wiring, counted by networkx on the edges the test selects itself
    src, dst = model.graph.graph.edge_index
    dag = nx.DiGraph((int(src[i]), int(dst[i])) for i in _top_k(model.graph.weight, k))
    assert f"depth {nx.dag_longest_path_length(dag)}" in out
    for name in ("wiring-swaps.png", "wiring-degrees.png"):
        assert f"plot             {tmp_path / name}" in out


def test_inspect_a_folder_that_is_not_a_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "not a run folder" in err and "config.yaml" in err
