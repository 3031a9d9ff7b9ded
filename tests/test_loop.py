"""fit / evaluate (neuralgraphs.train.loop) and WiringHistory (neuralgraphs.analysis.history)."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from neuralgraphs.analysis.history import WiringHistory, wired_modules
from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.generators import blocked_dag
from neuralgraphs.nodes import vector_node_op
from neuralgraphs.train import digits_loaders, evaluate, fit, load_checkpoint
from neuralgraphs.wiring import TopKWiring


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))


def _graph_model(seed=0, k=300):
    torch.manual_seed(seed)
    g = blocked_dag([64, 16, 10])
    return StaticGraph(g, vector_node_op(g.num_nodes, norm="batch"), "dnw", k=k)


@pytest.fixture(scope="module")
def loaders():
    return digits_loaders(64, seed=0, as_images=False)


@pytest.fixture(scope="module")
def small(loaders):
    """512 training samples (8 batches) and the test set: enough to see learning, fast to train."""
    train, test = loaders
    subset = Subset(train.dataset, range(512))
    return DataLoader(subset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)), test


def _state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_learns_and_is_deterministic(loaders):
    train, test = loaders
    runs = []
    for _ in range(2):
        model = _mlp()
        hist = fit(model, train, test, epochs=2, lr=0.1, seed=3, progress=False)
        runs.append((model, hist))
    (m1, h1), (m2, h2) = runs
    assert h1["epoch"] == [1, 2]
    assert h1["test_acc"][-1] > 0.8  # chance is 0.1
    assert h1["train_loss"] == h2["train_loss"] and h1["test_acc"] == h2["test_acc"]
    assert _state_equal(m1, m2)
    # evaluate agrees with an independent count
    m1.eval()
    with torch.no_grad():
        correct = sum(int((m1(x).argmax(1) == y).sum()) for x, y in test)
    assert evaluate(m1, test)["accuracy"] == pytest.approx(correct / len(test.dataset))
    assert evaluate(m1, test)["accuracy"] == pytest.approx(h1["test_acc"][-1])
    # another seed gives another batch order, hence another result
    h3 = fit(_mlp(), train, test, epochs=1, lr=0.1, seed=4, progress=False)
    assert h3["train_loss"][0] != h1["train_loss"][0]


def test_fit_dnw_graph_same_wiring_with_same_seed(small):
    train, test = small
    active = []
    for _ in range(2):
        model = _graph_model()
        fit(model, train, test, epochs=2, lr=0.1, seed=1, progress=False)
        with torch.no_grad():
            active.append(model.active().index)
    assert torch.equal(active[0], active[1])


def test_weight_decay_groups_and_lr_schedule(small):
    small = small[0]
    seen = {}

    class Spy:
        def on_fit_start(self, model, state):
            seen["groups"] = [(len(g["params"]), g["weight_decay"]) for g in state["optimizer"].param_groups]

    hist = fit(_mlp(), small, epochs=2, lr=0.2, weight_decay=1e-3, schedule="multistep", progress=False,
               callbacks=[Spy()])
    # two Linear weights decayed; two Linear biases and the BatchNorm weight / bias not
    assert seen["groups"] == [(2, 1e-3), (4, 0.0)]
    assert hist["lr"] == pytest.approx([0.02, 0.02])  # milestone at epoch 1 of 2
    assert hist["test_acc"] == [None, None]
    hist = fit(_mlp(), small, epochs=2, lr=0.2, schedule="cosine", progress=False)
    assert hist["lr"][-1] == pytest.approx(0.0, abs=1e-12)


def test_checkpoint_resume_matches_uninterrupted_run(small, tmp_path):
    train, test = small
    full_model = _graph_model()
    full = fit(full_model, train, test, epochs=4, lr=0.1, seed=2, progress=False)

    class Stop(Exception):
        pass

    def stop_at_epoch_3(model, epoch, record):
        if epoch == 3:
            raise Stop

    path = tmp_path / "run.pt"
    with pytest.raises(Stop):
        fit(_graph_model(), train, test, epochs=4, lr=0.1, seed=2, progress=False, checkpoint=path,
            callbacks=[stop_at_epoch_3])
    assert load_checkpoint(path)["epoch"] == 2  # epoch 3 was interrupted before its save

    starts = []
    resumed_model = _graph_model(seed=9)  # different initial weights: everything must come from the file
    resumed = fit(resumed_model, train, test, epochs=4, lr=0.1, seed=2, progress=False, checkpoint=path,
                  resume=True, callbacks=[lambda m, e, r: starts.append(e)])
    assert starts == [3, 4]
    assert resumed["epoch"] == [1, 2, 3, 4]
    assert resumed["train_loss"] == full["train_loss"]
    assert resumed["test_acc"] == full["test_acc"]
    assert _state_equal(resumed_model, full_model)
    assert load_checkpoint(path)["epoch"] == 4
    with pytest.raises(ValueError, match="epochs"):
        fit(_graph_model(), train, test, epochs=5, lr=0.1, seed=2, progress=False, checkpoint=path, resume=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"), ({"lr": -1.0}, "lr"), ({"schedule": "linear"}, "schedule"),
    ({"momentum": 1.0}, "momentum"), ({"label_smoothing": 2.0}, "label_smoothing"), ({"seed": -1}, "seed"),
    ({"warmup_epochs": -1}, "warmup_epochs"), ({"warmup_epochs": 1}, "^warmup_epochs: expected fewer than"),
    ({"warmup_epochs": 1, "epochs": 2, "schedule": "multistep"}, "^warmup_epochs: a warm-up is part of"),
])
def test_fit_validates_arguments(loaders, kwargs, match):
    args = {"epochs": 1, "lr": 0.1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        fit(_mlp(), loaders[0], progress=False, **args)
    with pytest.raises(TypeError, match="callbacks"):
        fit(_mlp(), loaders[0], epochs=1, lr=0.1, callbacks=[42])
    with pytest.raises(ValueError, match="^checkpoint_every: needs a checkpoint path"):
        fit(_mlp(), loaders[0], epochs=1, lr=0.1, checkpoint_every=5)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(_mlp(), loaders[0], epochs=1, lr=0.1, checkpoint="x.pt", checkpoint_every=0)


def test_warm_up_rises_linearly_then_follows_the_cosine(small):
    train, _ = small  # 8 batches an epoch
    rates = []

    class Rates:
        def on_fit_start(self, model, state):
            self.optimizer = state["optimizer"]

        def on_step_end(self, model, step, loss):
            rates.append(self.optimizer.param_groups[0]["lr"])  # the rate of the next step

    fit(_mlp(), train, epochs=4, lr=0.2, warmup_epochs=1, seed=0, progress=False, callbacks=[Rates()])
    # written out: step s (0-based) runs at 0.2 * s / 8 for s < 8, then 0.1 * (1 + cos(pi * (s - 8) / 24))
    expected = [0.2 * s / 8 if s < 8 else 0.1 * (1 + math.cos(math.pi * (s - 8) / 24)) for s in range(1, 33)]
    assert rates == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("own_generator", [True, False])
@pytest.mark.parametrize("stop_step", [11, 13])  # two steps after the checkpoint of step 9, one after that of 12
def test_checkpoint_inside_an_epoch_resumes_exactly(small, tmp_path, stop_step, own_generator):
    # dropout draws from torch's generator at every step: the resume must restore the state of the
    # checkpoint's step, not of the epoch's start, or the masks (hence the weights) differ; a loader
    # without its own generator shuffles from the global one when its epoch starts, so the replay of the
    # batch order needs the global state of the epoch's start
    def model(seed=0):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))

    train, test = small  # 8 batches an epoch: step 9 and 12 are inside epoch 2
    if not own_generator:
        train = DataLoader(train.dataset, batch_size=64, shuffle=True)
    full_model = model()
    full = fit(full_model, train, test, epochs=3, lr=0.1, seed=4, progress=False)

    class Stop:
        def on_step_end(self, model, step, loss):
            if step == stop_step:
                raise KeyboardInterrupt

    path = tmp_path / "mid.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(model(), train, test, epochs=3, lr=0.1, seed=4, progress=False, checkpoint=path, checkpoint_every=3,
            callbacks=[Stop()])
    saved = load_checkpoint(path)
    assert (saved["epoch"], saved["partial"]["batches"]) == (1, 1 if stop_step == 11 else 4)
    steps = []

    class Steps:
        def on_step_end(self, model, step, loss):
            steps.append(step)

    resumed_model = model(seed=7)
    resumed = fit(resumed_model, train, test, epochs=3, lr=0.1, seed=4, progress=False, checkpoint=path,
                  checkpoint_every=3, resume=True, callbacks=[Steps()])
    assert steps[0] == (10 if stop_step == 11 else 13) and steps[-1] == 24
    assert resumed["train_loss"] == pytest.approx(full["train_loss"], rel=1e-12)
    assert resumed["train_acc"] == full["train_acc"] and resumed["test_acc"] == full["test_acc"]
    assert _state_equal(resumed_model, full_model)


class _TwoWirings(nn.Module):
    """Two wired modules whose weights the test sets by hand."""

    def __init__(self):
        super().__init__()
        g = blocked_dag([3, 3])  # 9 candidates
        self.a = nn.Module()
        self.a.weight = nn.Parameter(torch.zeros(9))
        self.a.wiring = TopKWiring(g, k=3)
        self.b = nn.Module()
        self.b.weight = nn.Parameter(torch.zeros(9))
        self.b.wiring = TopKWiring(g, k=2)


def test_wiring_history_counts_swaps_against_sets():
    model = _TwoWirings()
    assert [name for name, _ in wired_modules(model)] == ["a", "b"]
    gen = torch.Generator().manual_seed(0)
    hist = WiringHistory()
    sets = []
    for _ in range(6):
        with torch.no_grad():
            model.a.weight.copy_(torch.randn(9, generator=gen))
            model.b.weight.copy_(torch.randn(9, generator=gen))
        hist.record(model)
        # reference: the k largest |w| as Python sets
        sets.append({name: set(torch.argsort(-getattr(model, name).weight.abs())[:k].tolist())
                     for name, k in (("a", 3), ("b", 2))})
    expect_swaps = [sum(len(cur[n] - prev[n]) for n in cur) for prev, cur in zip(sets, sets[1:])]
    assert hist.swaps() == expect_swaps
    assert hist.removed() == expect_swaps  # fixed budget: as many leave as enter
    assert hist.swaps(per_module=True)[0] == {n: len(sets[1][n] - sets[0][n]) for n in ("a", "b")}
    assert hist.final_overlap() == [sum(len(s[n] & sets[-1][n]) for n in ("a", "b")) / 5 for s in sets]
    assert hist.num_active() == [5] * 6
    assert hist.records[0]["a"].dtype == torch.int64 and hist.records[0]["a"].numel() == 3  # compact
    assert [row["swaps"] for row in hist.summary()] == [0] + expect_swaps


def test_wiring_history_as_fit_callback(small):
    train, test = small
    model = _graph_model()
    hist = WiringHistory(every=3)
    fit(model, train, test, epochs=2, lr=0.1, progress=False, callbacks=[hist])
    steps_per_epoch = len(train)
    expect_steps = sorted({0, *range(3, 2 * steps_per_epoch + 1, 3), steps_per_epoch, 2 * steps_per_epoch})
    assert hist.steps == expect_steps
    assert hist.labels[0] == "start" and hist.labels[-1] == "epoch 2"
    assert hist.final_overlap()[-1] == 1.0
    assert sum(hist.swaps()) > 0  # DNW rewires while training
    with torch.no_grad():
        assert torch.equal(hist.records[-1][""], model.active().index)
    with pytest.raises(ValueError, match="wired module"):
        WiringHistory().record(nn.Linear(2, 2))


def test_checkpoint_folder_is_checked_before_training(small, tmp_path):
    train, _ = small
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="^checkpoint: the folder .*nope.* does not exist"):
        fit(model, train, epochs=1, lr=0.1, progress=False, checkpoint=tmp_path / "nope" / "c.pt")
    with pytest.raises(ValueError, match="^checkpoint: .* is a folder"):
        fit(model, train, epochs=1, lr=0.1, progress=False, checkpoint=tmp_path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # not one step trained


def test_resume_refuses_other_hyper_parameters_and_other_models_untouched(small, tmp_path):
    train, _ = small
    path = tmp_path / "c.pt"
    fit(_mlp(), train, epochs=2, lr=0.1, seed=3, progress=False, checkpoint=path)
    for change, key in (({"lr": 0.01}, "lr"), ({"momentum": 0.5}, "momentum"), ({"seed": 4}, "seed"),
                        ({"weight_decay": 0.0}, "weight_decay"), ({"label_smoothing": 0.1}, "label_smoothing")):
        args = {"epochs": 2, "lr": 0.1, "seed": 3, **change}
        with pytest.raises(ValueError, match=f"^checkpoint: .* was written with {key}="):
            fit(_mlp(), train, progress=False, checkpoint=path, resume=True, **args)
    torch.manual_seed(0)
    other = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError, match="^checkpoint: .* was written for a different model"):
        fit(other, train, epochs=2, lr=0.1, seed=3, progress=False, checkpoint=path, resume=True)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_resume_is_exact_when_the_sampler_owns_the_generator(small, tmp_path):
    # DataLoader(sampler=RandomSampler(generator=g)): g decides the batch order and must be saved too
    from torch.utils.data import RandomSampler

    subset = small[0].dataset

    def loader():
        return DataLoader(subset, batch_size=64, sampler=RandomSampler(subset, generator=torch.Generator()))

    def stop_in_epoch_3(model, epoch, record):
        if epoch == 3:  # raised before epoch 3 is saved: the file holds epoch 2
            raise KeyboardInterrupt

    full_model = _mlp()
    fit(full_model, loader(), epochs=4, lr=0.1, seed=5, progress=False)
    path = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_mlp(), loader(), epochs=4, lr=0.1, seed=5, progress=False, checkpoint=path, callbacks=[stop_in_epoch_3])
    resumed = _mlp(seed=8)
    fit(resumed, loader(), epochs=4, lr=0.1, seed=5, progress=False, checkpoint=path, resume=True)
    assert _state_equal(resumed, full_model)
    # a loader without that generator cannot reproduce the order: refused, the model untouched
    plain = _mlp(seed=8)
    with pytest.raises(ValueError, match="^train_loader: the checkpoint holds the state of 1 shuffling"):
        fit(plain, DataLoader(subset, batch_size=64), epochs=4, lr=0.1, seed=5, progress=False,
            checkpoint=path, resume=True)
    assert _state_equal(plain, _mlp(seed=8))


def test_progress_bars_count_epochs_and_steps(small, monkeypatch, capsys):
    from neuralgraphs.train import loop

    monkeypatch.setattr(loop, "_progress_enabled", lambda progress: progress)
    fit(_mlp(), small[0], small[1], epochs=2, lr=0.1, progress=True)
    err = capsys.readouterr().err
    # the epoch bar ends at 2/2 with the last epoch's accuracies; a step bar counts an epoch's 8 batches
    # (tqdm throttles its redraws: the first one is all a run this short is sure to show)
    last = err.rsplit("epochs: 100%", 1)[1]
    assert "2/2" in last and "test_acc=" in last and "train_acc=" in last
    assert "epoch 1/2:   0%|          | 0/8" in err
