"""``neuralgraphs train``: shipped configs, overrides, outputs, exact resume and bad configs."""

import csv
import os

import numpy as np

import pytest
import torch

from neuralgraphs.cli import main
from neuralgraphs.cli import train as train_cli

FAST = ["digits-static-dnw", "digits-static-random", "digits-discrete-dnw", "digits-randwire-ws",
        "digits-randwire-dnw"]
SLOW = ["digits-continuous-dnw", "digits-mobilenet-dnw", "digits-mobilenet-random", "digits-resnet50-dnw-10"]
# the papers' experiments, on CIFAR-10 and ImageNet folders given with --data
PAPER = [f"cifar10-{kind}-{wiring}" for kind in ("static", "discrete", "continuous")
         for wiring in ("dnw", "random", "complete", "no-update")] + [
    "imagenet-mobilenet-x0.225-dnw", "imagenet-mobilenet-x0.225-dnw-small", "imagenet-mobilenet-x0.225-random",
    "imagenet-mobilenet-x0.25", "imagenet-resnet50-dnw-10", "imagenet-resnet50-dnw-20", "imagenet-randwire-small-ws"] + [
    f"cifar10-{kind}-{control}" for kind in ("static", "discrete", "continuous") for control in ("fine-tune", "lottery")]
# the controls that start from a finished digits-static-dnw run
CONTROLS = ["digits-static-fine-tune", "digits-static-lottery"]


def _wiring(path):
    """The wiring record of a run (``wiring.pt``) as a WiringHistory."""
    from neuralgraphs.analysis.history import WiringHistory
    from neuralgraphs.train import load_checkpoint

    hist = WiringHistory()
    hist.load_state_dict(load_checkpoint(path))
    return hist


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_list_names_every_shipped_config(capsys):
    assert main(["train", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    folder = os.path.join(os.path.dirname(train_cli.__file__), "..", "configs")
    assert listed == sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml"))
    assert set(FAST + SLOW + PAPER + CONTROLS) == set(listed)


@pytest.mark.parametrize("name", FAST + SLOW + PAPER + CONTROLS)
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


def test_paper_configs_carry_the_papers_recipes():
    tiny = train_cli.load_config("cifar10-static-dnw")
    assert tiny["train"] == {"epochs": 160, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
                             "schedule": "multistep", "milestones": [80, 120]}
    assert tiny["data"] == {"name": "cifar10", "batch_size": 512, "augment": True}
    model = train_cli.build_model(tiny)
    # 5 % of 800 x 800 edges, the paper's budget
    assert model.graph.wiring.num_active == 32000
    mobile = train_cli.load_config("imagenet-mobilenet-x0.225-dnw")
    assert mobile["train"]["epochs"] == 250 and mobile["data"]["image_size"] == 224
    resnet = train_cli.load_config("imagenet-resnet50-dnw-20")
    assert resnet["train"]["label_smoothing"] == 0.1 and resnet["train"]["momentum"] == 0.875
    assert resnet["train"]["warmup_epochs"] == 5 and resnet["train"]["schedule"] == "cosine"


def test_a_paper_config_needs_its_data_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "cifar10-static-dnw", "--out", str(tmp_path)])
    assert "give --data DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "cifar10-static-dnw", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)])
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a folder without the batch files names what is missing
        main(["train", "cifar10-static-dnw", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "data_batch_1" in capsys.readouterr().err


def _small_tiny(*extra):
    """The paper's static classifier at 96 nodes (the same code path, seconds instead of minutes)."""
    return ["train.epochs=1", "data.batch_size=4", "model.num_nodes=96", "model.num_inputs=32",
            "model.num_outputs=16", "model.blocks=[32, 32, 32]", *extra]


def test_train_on_cifar10_files_in_the_real_format(tmp_path):
    from test_data import _write_cifar_batch

    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        _write_cifar_batch(root / f"data_batch_{i}", rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), [i, 9 - i])
    _write_cifar_batch(root / "test_batch", rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8), [1, 2, 3])
    out = tmp_path / "run"
    assert main(["train", "cifar10-static-dnw", *_small_tiny(), "--data", str(tmp_path), "--out", str(out)]) == 0
    rows = _rows(out / "metrics.csv")
    # 10 training images in batches of 4: 3 steps; the test accuracy is a multiple of 1/3
    assert rows[0]["step"] == "3" and round(3 * float(rows[0]["test_acc"]), 6) in (0, 1, 2, 3)
    assert train_cli.load_config(str(out / "config.yaml"))["data"]["root"] == str(tmp_path)


def test_train_on_mnist_and_image_folders(tmp_path, capsys):
    import gzip
    import struct

    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for prefix, n in (("train", 6), ("t10k", 2)):
        header = lambda magic, shape: struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape)  # noqa: E731
        with gzip.open(mnist / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header(2051, (n, 28, 28)) + rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(mnist / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(header(2049, (n,)) + bytes(range(n)))
    # the digits classifier on MNIST resized to its 8 x 8 input
    out = tmp_path / "m"
    assert main(["train", "digits-static-dnw", "train.epochs=1", "data.name=mnist", "data.batch_size=3",
                 "data.image_size=8", "--data", str(mnist), "--out", str(out)]) == 0
    assert _rows(out / "metrics.csv")[0]["step"] == "2"
    folder = tmp_path / "images"
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("ant", "bee"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n):  # images of different sizes: resized and centre-cropped to 32
                size = (40 + 8 * i, 36)
                Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8), mode="RGB").save(
                    folder / split / cls / f"{i}.png")
    out = tmp_path / "f"
    assert main(["train", "cifar10-static-dnw", *_small_tiny("data.name=folder", "data.image_size=32",
                                                               "model.num_classes=2"),
                 "--data", str(folder), "--out", str(out)]) == 0
    rows = _rows(out / "metrics.csv")
    assert rows[0]["step"] == "2" and float(rows[0]["test_acc"]) in (0.0, 0.5, 1.0)
    with pytest.raises(SystemExit):  # a random-resized crop needs its output size
        main(["train", "cifar10-static-dnw", *_small_tiny("data.name=folder"), "--data", str(folder),
              "--out", str(tmp_path / "g")])
    assert "data.image_size: the random-resized crop" in capsys.readouterr().err


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_events_carry_the_metrics_and_the_wiring(tmp_path):
    pytest.importorskip("tensorboard")
    Image = pytest.importorskip("PIL.Image")
    import io

    assert main(["train", "digits-static-dnw", "train.epochs=2", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "metrics.csv")
    events = _events(tmp_path / "tensorboard")
    for key in ("train_loss", "test_acc", "lr", "active_edges", "swapped"):
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [int(r["step"]) for r in rows]
        assert [v for _, v in got] == pytest.approx([float(r[key]) for r in rows], rel=1e-6)
    (last,) = [e for e in events.Images("wiring/graph") if e.step == int(rows[-1]["step"])]
    picture = np.asarray(Image.open(io.BytesIO(last.encoded_image_string)).convert("L"))
    model = train_cli.build_model(train_cli.load_config(str(tmp_path / "config.yaml")))
    n = model.graph.graph.num_nodes
    assert picture.shape == (n, n) and int((picture > 127).sum()) == int(rows[-1]["active_edges"])


def test_tensorboard_after_a_resume_shows_every_step_once(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    args = ["train", "digits-static-dnw", "train.epochs=3"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    real = train_cli._Metrics.on_epoch_end

    def killed_in_epoch_2(self, model, epoch, record):
        real(self, model, epoch, record)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cli._Metrics, "on_epoch_end", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(args + ["--out", str(tmp_path / "cut")])
    monkeypatch.setattr(train_cli._Metrics, "on_epoch_end", real)
    assert main(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    whole = [(e.step, e.value) for e in _events(tmp_path / "whole" / "tensorboard").Scalars("train_loss")]
    cut = [(e.step, e.value) for e in _events(tmp_path / "cut" / "tensorboard").Scalars("train_loss")]
    assert [s for s, _ in cut] == [s for s, _ in whole]
    assert [v for _, v in cut] == pytest.approx([v for _, v in whole], rel=1e-6)


@pytest.mark.parametrize("kill_at", [17, 30])  # in epoch 1 (22 steps each), in epoch 2
def test_checkpoints_inside_an_epoch_resume_exactly(kill_at, tmp_path, monkeypatch):
    import torch

    from neuralgraphs.train import load_checkpoint

    args = ["train", "digits-static-dnw", "train.epochs=2", "train.checkpoint_every=5", "record.every=3"]
    assert main(args + ["--out", str(tmp_path / "whole")]) == 0
    real = train_cli._WiringFiles.on_step_end

    def killed(self, model, step, loss):
        real(self, model, step, loss)
        if step == kill_at:
            raise KeyboardInterrupt  # after the checkpoint of step 15 (or 30) and three more steps (or none)

    monkeypatch.setattr(train_cli._WiringFiles, "on_step_end", killed)
    with pytest.raises(KeyboardInterrupt):
        main(args + ["--out", str(tmp_path / "cut")])
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert saved["partial"]["batches"] == (kill_at - 1) // 5 * 5 % 22  # the last multiple of 5 before the kill
    monkeypatch.setattr(train_cli._WiringFiles, "on_step_end", real)
    assert main(args + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop(_rows(tmp_path / "cut" / "metrics.csv")) == drop(_rows(tmp_path / "whole" / "metrics.csv"))
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["model"] for d in ("cut", "whole"))
    assert all(torch.equal(a[k], b[k]) for k in b)
    wa, wb = (_wiring(tmp_path / d / "wiring.pt") for d in ("cut", "whole"))
    assert wa.steps == wb.steps and wa.labels == wb.labels and len(wa) == len(wb)
    assert all(torch.equal(x[n], y[n]) for x, y in zip(wa.records, wb.records) for n in y)


def test_a_config_seeds_the_initial_weights():
    # the dense baseline's builder takes no seed: the config's seed decides its weights
    config = train_cli.load_config("imagenet-mobilenet-x0.25")
    before = torch.get_rng_state()
    a, b = train_cli.build_model(config), train_cli.build_model(config)
    other = train_cli.build_model({**config, "seed": 1})
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left alone
    assert _state_equal(a, b) and not _state_equal(a, other)


def _state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def dnw_run(tmp_path_factory):
    """A finished two-epoch digits-static-dnw run."""
    out = tmp_path_factory.mktemp("dnw")
    assert main(["train", "digits-static-dnw", "train.epochs=2", "--out", str(out)]) == 0
    return out


def _active(model):
    graph = model.graph
    return set(graph.active().index.tolist()), graph.weight.detach()


@pytest.mark.parametrize("name", CONTROLS)
def test_controls_freeze_the_learned_wiring(name, dnw_run, tmp_path):
    from neuralgraphs.models import DigitsGraphClassifier
    from neuralgraphs.train import load_checkpoint

    config = train_cli.resolve_config(train_cli.load_config(name), [f"init.from={dnw_run}", "train.epochs=2"])
    model = train_cli.init_model(train_cli.build_model(config), config)
    trained = load_checkpoint(dnw_run / "checkpoint.pt")["model"]
    magnitude = trained["graph.weight"].abs()
    active, weight = _active(model)
    # the frozen edges are the trained run's largest |w| (checked here by the order, not by a top-k)
    chosen = torch.zeros_like(magnitude, dtype=torch.bool)
    chosen[list(active)] = True
    assert len(active) == 614 and magnitude[chosen].min() >= magnitude[~chosen].max()
    if name.endswith("fine-tune"):
        start = trained
    else:  # the weights the DNW run started with, rebuilt here from its builder and seed
        torch.manual_seed(0)
        start = DigitsGraphClassifier(kind="static", wiring="dnw").state_dict()
    state = model.state_dict()
    assert all(torch.equal(state[k], start[k]) for k in start)
    # training keeps the wiring: no swaps, the same active edges at the end
    out = tmp_path / "run"
    assert main(["train", name, f"init.from={dnw_run}", "train.epochs=2", "--out", str(out)]) == 0
    assert [r["swapped"] for r in _rows(out / "metrics.csv")] == ["0", "0"]
    final = train_cli.build_model(config)
    train_cli.init_model(final, config)
    final.load_state_dict(load_checkpoint(out / "checkpoint.pt")["model"])
    assert _active(final)[0] == active and not torch.equal(_active(final)[1], weight)


def test_bad_init_sections_are_named(dnw_run, tmp_path, capsys):
    random_run = tmp_path / "random"
    assert main(["train", "digits-static-random", "train.epochs=1", "--out", str(random_run)]) == 0
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "checkpoint.pt").write_bytes((dnw_run / "checkpoint.pt").read_bytes())
    (unfinished / "config.yaml").write_text((dnw_run / "config.yaml").read_text().replace("epochs: 2", "epochs: 5"))
    cases = [
        ([f"init.from={tmp_path / 'nowhere'}"], "config.yaml is missing"),
        ([f"init.from={dnw_run}", "init.weights=best"], "init.weights must be one of ['trained', 'initial']"),
        ([f"init.from={dnw_run}", "model.kind=discrete"], "trained another model: model.kind differ"),
        ([f"init.from={unfinished}"], "is not finished (epoch 2 of 5)"),
        ([f"init.from={random_run}", "model.wiring=random"], "did not learn a wiring"),
        (["init.start=1"], "unknown key init.start"),
    ]
    for overrides, message in cases:
        with pytest.raises(SystemExit):
            main(["train", "digits-static-fine-tune", *overrides, "train.epochs=1", "--out", str(tmp_path / "o")])
        assert message in capsys.readouterr().err, overrides


def test_a_control_resumes_and_inspects_without_its_first_run(dnw_run, tmp_path, monkeypatch, capsys):
    args = ["train", "digits-static-lottery", "train.epochs=2"]
    assert main(args + [f"init.from={dnw_run}", "--out", str(tmp_path / "whole")]) == 0
    real = train_cli._Metrics.on_epoch_end

    def killed_in_epoch_2(self, model, epoch, record):
        real(self, model, epoch, record)  # the checkpoint of epoch 1 is there, not that of epoch 2
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_cli._Metrics, "on_epoch_end", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(args + [f"init.from={dnw_run}", "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(train_cli._Metrics, "on_epoch_end", real)
    # the checkpoint holds the frozen wiring: the first run is not read again
    gone = tmp_path / "gone"
    assert main(args + [f"init.from={gone}", "--out", str(tmp_path / "cut"), "--resume"]) == 0
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop(_rows(tmp_path / "cut" / "metrics.csv")) == drop(_rows(tmp_path / "whole" / "metrics.csv"))
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "whole")]) == 0
    assert "614 active of 1488 candidates" in capsys.readouterr().out


def _sigkill_when(proc, folder, ready, timeout=120.0):
    """Poll ``folder`` until ``ready(folder)`` holds, then SIGKILL ``proc`` (a real kill -9: no handler, no
    ``finally`` runs).  Returns whether the condition was seen before the process ended on its own."""
    import signal
    import time

    end = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < end:
        if ready(folder):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    proc.wait()
    return False


def test_kill_9_at_several_points_then_resume_gives_the_same_run(tmp_path):
    import subprocess
    import sys

    from neuralgraphs.train import load_checkpoint

    cmd = [sys.executable, "-m", "neuralgraphs", "train", "digits-static-dnw", "train.epochs=4",
           "train.checkpoint_every=4", "record.every=3"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run(cmd + ["--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)

    cut = tmp_path / "cut"

    def checkpoint_id(folder):
        try:
            st = os.stat(folder / "checkpoint.pt")
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def rows(folder):
        try:
            return len(_rows(folder / "metrics.csv"))
        except FileNotFoundError:
            return 0

    def writing_a_checkpoint(folder):  # the temporary file of an atomic write exists: kill in mid-write
        return any(n.startswith(".checkpoint.pt.") for n in os.listdir(folder)) if folder.is_dir() else False

    # Each condition is read against the folder as this process found it, so every kill comes later in the
    # run than the one before.
    points = [
        lambda start: (lambda f: checkpoint_id(f) is not None),                       # after the first checkpoint
        lambda start: (lambda f: rows(f) > start["rows"]),                            # right after an epoch's row
        lambda start: (lambda f: writing_a_checkpoint(f) or checkpoint_id(f) != start["ckpt"]),  # mid-write
        lambda start: (lambda f: rows(f) > start["rows"] + 1),                        # two epochs later
    ]
    killed = 0
    for i, point in enumerate(points):
        start = {"rows": rows(cut), "ckpt": checkpoint_id(cut)}
        proc = subprocess.Popen(cmd + ["--out", str(cut)] + (["--resume"] if i else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed += _sigkill_when(proc, cut, point(start))
        if proc.returncode == 0:
            break
    assert killed >= 3  # the run was really cut (the last point may fall after the run's end)
    if (cut / "checkpoint.pt").exists():
        load_checkpoint(cut / "checkpoint.pt")  # whatever the kill hit, the checkpoint on disk is a whole one
    done = subprocess.run(cmd + ["--out", str(cut), "--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop(_rows(cut / "metrics.csv")) == drop(_rows(tmp_path / "whole" / "metrics.csv"))
    a, b = (load_checkpoint(tmp_path / d / "checkpoint.pt")["model"] for d in ("cut", "whole"))
    assert all(torch.equal(a[k], b[k]) for k in b)
    wa, wb = (_wiring(tmp_path / d / "wiring.pt") for d in ("cut", "whole"))
    assert wa.steps == wb.steps and wa.labels == wb.labels and len(wa) == len(wb)
    assert all(torch.equal(x[n], y[n]) for x, y in zip(wa.records, wb.records) for n in y)
    # a write cut by a kill leaves no temporary file behind once the run has finished
    assert sorted(n for n in os.listdir(cut) if n.startswith(".")) == []
