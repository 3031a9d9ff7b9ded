"""The neuralgraphs command line (neuralgraphs.cli)."""

import csv
import json
import os

import pytest
import torch

import statistics

from neuralgraphs import cli
from neuralgraphs.cli import MODEL_KEYS, compare, main


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert main(["compare", "--quick", "--no-progress", "--out", str(out)]) == 0
    return out


def test_compare_quick_writes_results(quick_results):
    out = quick_results
    pngs = [f"{kind}_{e}.png" for e in ("channels", "stages") for kind in ("accuracy", "curves")]
    for name in ["results.json", "results.csv", "runs.csv"] + pngs:
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "results.json").read_text())
    rows = data["models"]
    assert [(r["experiment"], r["model"]) for r in rows] == (
        [("channels", m) for m in ("ws", "er", "ba", "random", "dnw", "complete")]
        + [("stages", m) for m in ("ws", "er", "ba", "dnw", "complete")])
    assert all(list(r) == list(MODEL_KEYS) for r in rows)
    for e in ("channels", "stages"):
        by_model = {r["model"]: r for r in rows if r["experiment"] == e}
        # equal edges for the WS graph and DNW (same seeds), more for the complete graph
        assert by_model["ws"]["active_edges"] == by_model["dnw"]["active_edges"]
        assert by_model["complete"]["active_edges"] > by_model["dnw"]["active_edges"]
        # the smoke run is trained well above chance (10 %), every model
        assert all(r["acc_mean"] > 0.3 for r in by_model.values()), {m: r["acc_mean"] for m, r in by_model.items()}
        # Welch's test against DNW, recomputed here from the per-seed accuracies
        dnw = by_model["dnw"]["accuracies"]
        for m, r in by_model.items():
            assert r["seeds"] == [0, 1] and len(r["accuracies"]) == 2
            if m == "dnw":
                assert r["welch_t"] is None and r["diff_vs_dnw"] is None
                continue
            a = r["accuracies"]
            va, vb = statistics.variance(dnw) / 2, statistics.variance(a) / 2
            if va + vb > 0:
                assert r["welch_t"] == pytest.approx((statistics.fmean(dnw) - statistics.fmean(a)) / (va + vb) ** 0.5)
            assert r["diff_vs_dnw"] == pytest.approx(statistics.fmean(dnw) - statistics.fmean(a))
    assert len(data["runs"]) == 2 * 11 and data["config"]["quick"] is True
    with open(out / "results.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["model"] for r in csv_rows] == [r["model"] for r in rows]
    assert float(csv_rows[0]["acc_mean"]) == pytest.approx(rows[0]["acc_mean"])


def test_welch_against_scipy():
    from scipy import stats

    a, b = [0.91, 0.94, 0.93, 0.95, 0.92], [0.85, 0.90, 0.88, 0.80, 0.86]
    t, p = compare.welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    assert all(v != v for v in compare.welch([0.9], b))  # one value: nan


def test_inspect_checkpoint_and_graph(tmp_path, capsys):
    import networkx as nx
    import torch

    from neuralgraphs.generators.random_graphs import random_dag, save_graph
    from neuralgraphs.train import save_checkpoint

    dag = random_dag("ws", 12, 0, k=4, p=0.75)
    save_graph(dag, tmp_path / "g.json")
    assert main(["inspect", str(tmp_path / "g.json")]) == 0
    text = capsys.readouterr().out
    assert f"num_edges        {dag.number_of_edges()}" in text
    assert f"depth            {nx.dag_longest_path_length(dag)}" in text
    save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.zeros(3)}, "epoch": 4})
    assert main(["inspect", str(tmp_path / "c.pt")]) == 0
    assert "epoch            4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tmp_path / "missing.json")])
    assert exc.value.code == 2


@pytest.mark.parametrize("content", [[0, 1, 2], ["a", "b"]])
def test_inspect_node_link_json_with_non_object_nodes_is_an_argparse_error(tmp_path, capsys, content):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"directed": True, "multigraph": False, "graph": {}, "nodes": content,
                                "edges": []}), encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "error: argument path:" in err and str(path) in err and "not an object" in err
    assert "Traceback" not in err


def test_inspect_truncated_checkpoint_is_an_argparse_error(tmp_path, capsys):
    import torch

    from neuralgraphs.train import save_checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(20, 20)}, "epoch": 4})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and str(path) in err and "truncated" in err


@pytest.mark.parametrize("args, option", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "two"], "--epochs"), (["--seeds", "-1,2"], "--seeds"),
    (["--seeds", "0"], "--seeds"), (["--nodes", "2"], "--nodes"), (["--channels", "1"], "--channels"),
    (["--budget", "0"], "--budget"), (["--models", "ws,foo"], "--models"), (["--lr", "-0.1"], "--lr"),
    (["--lr", "nan"], "--lr"), (["--batch-size", "0"], "--batch-size"), (["--threads", "0"], "--threads"),
    (["--nodes", "4", "--budget", "100"], "--budget"), (["--bogus"], "--bogus"),
    (["--graph-nodes", "12"], "--graph-nodes"), (["--graph-nodes", "30", "--graph-budget", "1000"], "--graph-budget"),
    (["--experiments", "stages", "--graph-budget", "10"], "--graph-budget"), (["--experiments", "both"], "--experiments"),
    (["--jobs", "0"], "--jobs"), (["--graph-models", "ws,ws"], "--graph-models"),
    (["--graph-epochs", "0"], "--graph-epochs"), (["--graph-blocks", "21"], "--graph-blocks"),
    # 32 nodes in blocks 4 | 4 x 5 | 8 have (32^2 - 16 * 6 - 64) / 2 = 432 candidates, the complete DAG 496
    (["--graph-budget", "433"], "--graph-budget"),
])
def test_bad_options_exit_with_argparse_error(args, option, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--out", str(tmp_path)] + args)
    assert exc.value.code == 2
    assert option in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--out", str(tmp_path / "file")])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err


def test_config_yaml(tmp_path, capsys, monkeypatch):
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 3\nseeds: [1, 4]\nbatch-size: 32\nmodels: ws,dnw\nquick: true\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: 0.1\n")
    seen = {}
    # Stop before training: only the resolved options are checked here.
    monkeypatch.setattr(compare, "run_compare", lambda opts: seen.update(opts) or (_ for _ in ()).throw(KeyError))
    with pytest.raises(KeyError):
        main(["compare", "--config", str(good), "--epochs", "2", "--out", str(tmp_path)])
    assert seen["epochs"] == 2  # the command line wins over the file
    assert seen["seeds"] == [1, 4] and seen["batch_size"] == 32 and seen["models"] == ["ws", "dnw"]
    assert seen["nodes"] == cli.QUICK_DEFAULTS["nodes"]  # quick from the file
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--config", str(bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--config" in err and "learning_rate" in err and "allowed keys" in err
    bad.write_text("epochs: -3\n")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--config", str(bad)])
    assert exc.value.code == 2 and "'epochs'" in capsys.readouterr().err


def test_demo_runs(capsys):
    assert main(["demo", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "dnw wiring" in out and "random wiring" in out and "swaps" in out


def test_python_m_entry_point():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "neuralgraphs", "compare", "--epochs", "0"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--epochs" in proc.stderr


def _no_training(monkeypatch):
    def fail(opts):
        raise AssertionError("training started")
    monkeypatch.setattr(compare, "run_compare", fail)


@pytest.mark.parametrize("args, option, words", [
    (["--out", "{file}/sub"], "--out", "cannot create the folder"),
    (["--budget", "10", "--models", "ws,er"], "--budget", "sets the dnw model's edges"),
    (["--graph-nodes", "12"], "--graph-nodes", "at least 13 nodes"),
])
def test_compare_refuses_before_training(args, option, words, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    (tmp_path / "file").write_text("x")
    args = [a.format(file=tmp_path / "file") for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--quick", "--no-progress"] + out + args)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and option in err and words in err


def test_compare_small_stages_are_allowed(tmp_path, monkeypatch):
    # the sparse WS stages (k = 2) need three nodes, not five
    seen = {}
    monkeypatch.setattr(compare, "run_compare", lambda opts: seen.update(opts) or (_ for _ in ()).throw(KeyError))
    with pytest.raises(KeyError):
        main(["compare", "--nodes", "4", "--models", "ws,dnw", "--out", str(tmp_path / "o")])
    assert seen["nodes"] == 4 and os.path.isdir(tmp_path / "o")  # the folder exists before training
    model = compare._build("stages", "ws", 0, {**compare.COMPARE_DEFAULTS, "nodes": 4})
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("value", ["null", "[a]"])
def test_config_out_must_be_a_path(value, tmp_path, capsys, monkeypatch):
    _no_training(monkeypatch)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {value}\n")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--config", str(cfg)])
    assert exc.value.code == 2 and "expected a folder path" in capsys.readouterr().err


def test_inspect_any_dict_save_checkpoint_accepts(tmp_path, capsys):
    import torch

    from neuralgraphs.train import save_checkpoint

    states = [{"model": torch.zeros(3)}, {1: torch.ones(2), "a": torch.ones(4)}, {"run": [1, 2]},
              {"history": {"epoch": [1], "train_loss": ["x"]}}]
    for i, state in enumerate(states):
        save_checkpoint(tmp_path / f"{i}.pt", state)
        assert main(["inspect", str(tmp_path / f"{i}.pt")]) == 0
    out = capsys.readouterr().out
    assert "tensors          1, 3 values" in out and "tensors          2, 6 values" in out
    (tmp_path / "junk.pt").write_bytes(b"hello world" * 10)
    (tmp_path / "bad.graphml").write_text("<graphml><graph")
    for name in ("junk.pt", "bad.graphml"):
        with pytest.raises(SystemExit) as exc:
            main(["inspect", str(tmp_path / name)])
        assert exc.value.code == 2 and name in capsys.readouterr().err


def test_each_experiment_trains_its_own_epochs(monkeypatch):
    seen = []

    def fake_fit(model, train_loader, test_loader, *, epochs, **kwargs):
        seen.append((type(model).__name__, epochs, getattr(model, "num_blocks", None)))
        return {"test_acc": [0.5] * epochs}

    import neuralgraphs.train

    monkeypatch.setattr(neuralgraphs.train, "fit", fake_fit)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # run_one's, for its own process only
    opts = {**cli.COMPARE_DEFAULTS, "graph_epochs": 3, "epochs": 2, "graph_nodes": 16, "graph_blocks": 2,
            "nodes": 6}
    channels = compare.run_one(("channels", "ws", 0), opts)
    stages = compare.run_one(("stages", "ws", 0), opts)
    assert seen == [("ChannelGraphClassifier", 3, 2), ("DigitsRandWire", 2, None)]
    assert channels["swaps_first_epoch"] == stages["swaps_first_epoch"] == 0
