"""``neuralgraphs train``: shipped configs, overrides, outputs, exact resume and bad configs."""

import csv
import os

import pytest

from neuralgraphs.cli import main
from neuralgraphs.cli import train as train_cli

FAST = ["digits-static-dnw", "digits-static-random", "digits-discrete-dnw", "digits-randwire-ws",
        "digits-randwire-dnw"]
SLOW = ["digits-continuous-dnw", "digits-mobilenet-dnw", "digits-mobilenet-random", "digits-resnet50-dnw-10"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_list_names_every_shipped_config(capsys):
    assert main(["train", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    folder = os.path.join(os.path.dirname(train_cli.__file__), "..", "configs")
    assert listed == sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))
    assert set(FAST + SLOW) == set(listed)


@pytest.mark.parametrize("name", FAST + SLOW)
def test_every_config_resolves_and_builds(name):
    config = train_cli.load_config(name)
    model = train_cli.build_model(config)
    assert sum(p.numel() for p in model.parameters()) > 0


def _train(name, out, *overrides):
    return main(["train", name, "train.epochs=1", *overrides, "--out", str(out)])


@pytest.mark.parametrize("name", FAST)
def test_fast_configs_train_one_epoch(name, tmp_path):
    assert _train(name, tmp_path) == 0
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == ["1"] and list(rows[0]) == list(train_cli.METRIC_COLUMNS)
    assert 0.0 <= float(rows[0]["test_acc"]) <= 1.0
    assert (tmp_path / "checkpoint.pt").is_file()
    resolved = train_cli.load_config(str(tmp_path / "config.yaml"))
    assert resolved["train"]["epochs"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_slow_configs_train_one_epoch(name, tmp_path):
    assert _train(name, tmp_path) == 0
    assert len(_rows(tmp_path / "metrics.csv")) == 1


def test_resume_after_a_kill_gives_the_same_rows(tmp_path, monkeypatch):
    args = ["train", "digits-static-dnw", "train.epochs=3"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    whole = _rows(tmp_path / "whole" / "metrics.csv")

    real = train_cli._Metrics.on_epoch_end

    def killed_in_epoch_2(self, model, epoch, record):
        real(self, model, epoch, record)  # the row is written, the checkpoint of epoch 2 is not
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cli._Metrics, "on_epoch_end", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(args + ["--out", str(tmp_path / "cut")])
    assert len(_rows(tmp_path / "cut" / "metrics.csv")) == 2
    monkeypatch.setattr(train_cli._Metrics, "on_epoch_end", real)
    assert main(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    cut = _rows(tmp_path / "cut" / "metrics.csv")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop(cut) == drop(whole)


@pytest.mark.parametrize("override, message", [
    ("train.epochs=two", "train.epochs: expected an int"),
    ("train.epoch=2", "unknown key train.epoch"),
    ("model.wiring=3", "model.wiring: expected a str"),
    ("colour=3", "unknown key 'colour'"),
    ("train.epochs", "expected key=value"),
    ("model.builder=vgg", "model.builder must be one of"),
])
def test_bad_overrides_are_named(override, message, capsys):
    with pytest.raises(SystemExit):
        main(["train", "digits-static-dnw", override, "--show"])
    assert message in capsys.readouterr().err


def test_bad_config_files(tmp_path, capsys):
    cases = {
        "tag.yaml": "model: !!python/object/apply:os.system ['true']\n",
        "section.yaml": "model: {builder: digits_network, kind: ws}\ndata: {}\ntrain: {epochs: 1, lr: 0.1}\nextra: 1\n",
        "builder.yaml": "model: {builder: nope}\ndata: {}\ntrain: {epochs: 1, lr: 0.1}\n",
        "missing.yaml": "model: {builder: digits_network, kind: ws}\ndata: {}\ntrain: {lr: 0.1}\n",
    }
    messages = {"tag.yaml": "not a valid plain YAML", "section.yaml": "unknown section",
                "builder.yaml": "model.builder", "missing.yaml": "train.epochs and train.lr are required"}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(SystemExit):
            main(["train", str(path), "--show"])
        assert messages[name] in capsys.readouterr().err, name
    with pytest.raises(SystemExit):
        main(["train", "no-such-config", "--show"])
    assert "neither a YAML file nor a shipped config" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "digits-static-dnw", "model.colour=3", "--out", str(tmp_path / "x")])
    assert "unknown key(s) ['colour']" in capsys.readouterr().err
