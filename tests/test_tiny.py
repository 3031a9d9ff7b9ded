"""The tiny DNW classifiers and the digits classifiers."""

import copy

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs.analysis import count_parameters, effective_edges
from neuralgraphs.dynamics import StaticGraph
from neuralgraphs.models import DigitsGraphClassifier, TinyClassifier
from neuralgraphs.train import digits_loaders
from neuralgraphs.wiring import FixedWiring, freeze_wiring

SMALL = dict(num_nodes=40, num_inputs=8, num_outputs=10, blocks=(8, 12, 10, 10), density=0.1)


def small(kind):
    """SMALL for ``kind``: ``blocks`` belongs to the static model only."""
    return SMALL if kind == "static" else {k: v for k, v in SMALL.items() if k != "blocks"}


def _train(model, loader, epochs, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()


def _accuracy(model, loader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += y.numel()
    return correct / total


# ---------------------------------------------------------------------------------------------- digits
@pytest.mark.parametrize("kind,as_images,epochs", [
    ("static", True, 2), ("discrete", True, 2), ("continuous", True, 2), ("static", False, 3),
    ("discrete", False, 3)])
def test_digits_dnw_beats_chance(kind, as_images, epochs):
    torch.manual_seed(0)
    train, test = digits_loaders(batch_size=128, seed=0, as_images=as_images)
    options = {"step_size": 1.0} if kind == "continuous" else None
    model = DigitsGraphClassifier(kind, "dnw", as_images=as_images, options=options)
    _train(model, train, epochs, lr=0.02)
    assert _accuracy(model, test) > 0.7  # chance is 0.1


@pytest.mark.slow
def test_digits_vector_continuous_beats_chance():
    torch.manual_seed(0)
    train, test = digits_loaders(batch_size=128, seed=0, as_images=False)
    model = DigitsGraphClassifier("continuous", "dnw", as_images=False)
    _train(model, train, 3, lr=0.02)
    assert _accuracy(model, test) > 0.7


def test_digits_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        DigitsGraphClassifier("recurrent")
    with pytest.raises(ValueError, match="wiring"):
        DigitsGraphClassifier("static", "best")
    with pytest.raises(ValueError, match="x"):
        DigitsGraphClassifier("static", as_images=False)(torch.zeros(2, 1, 8, 8))


# ---------------------------------------------------------------------------------------------- tiny
@pytest.mark.parametrize("kind", ["static", "discrete", "continuous"])
def test_tiny_output_shape(kind):
    extra = dict(method="rk4", options={"step_size": 0.5}) if kind == "continuous" else {}
    model = TinyClassifier(kind, **extra)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.graph.wiring.num_active == 32000  # round(0.05 * 800 ** 2)


def test_tiny_static_candidates_are_useful_and_parameters_near_paper():
    model = TinyClassifier("static", "dnw")
    g = model.graph.graph
    # independent count: block b feeds every later block; the 92 non-output nodes of the last block are dead
    blocks = [32, 192, 192, 192, 192]
    full = sum(b * sum(blocks[i + 1:]) for i, b in enumerate(blocks))
    assert g.num_edges == full - 92 * (800 - 192)
    assert bool(g.useful_edges().all())
    assert effective_edges(model) == model.graph.wiring.num_active == 32000
    params = count_parameters(model)
    assert abs(params - 41_000) <= 0.15 * 41_000
    # edges + 708 live nodes x (9 conv + 2 norm) + stem (3*16*9 + 32 + 16*9 + 16*32 + 64) + head (1010)
    assert params == 32000 + 708 * 11 + 1184 + 1010


def test_tiny_static_complete_wiring_uses_every_candidate():
    model = TinyClassifier("static", "complete", **SMALL)
    assert effective_edges(model) == model.graph.graph.num_edges == model.graph.wiring.num_active


def test_tiny_validates_arguments():
    with pytest.raises(ValueError, match="blocks"):
        TinyClassifier("static", num_nodes=200)
    with pytest.raises(ValueError, match="density"):
        TinyClassifier("static", density=1.5)
    with pytest.raises(ValueError, match="x"):
        TinyClassifier("static", **SMALL)(torch.zeros(2, 3, 32))


def _active_set(module):
    with torch.no_grad():
        return module.active().index.clone()


def _steps(model, n=3, lr=0.5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(n):
        x = torch.randn(4, 3, 32, 32, generator=gen)
        y = torch.randint(0, 10, (4,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("kind", ["static", "discrete"])
def test_freeze_wiring_keeps_the_learned_edges(kind):
    model = TinyClassifier(kind, "dnw", **small(kind))
    _steps(model)
    learned = torch.topk(model.graph.weight.detach().abs(), model.graph.wiring.num_active).indices.sort().values
    freeze_wiring(model)
    assert isinstance(model.graph.wiring, FixedWiring)
    with torch.no_grad():  # shrink the learned edges: a top-k wiring would now pick other edges
        model.graph.weight[learned] *= 1e-3
    moved = torch.topk(model.graph.weight.detach().abs(), model.graph.wiring.num_active).indices.sort().values
    assert not torch.equal(moved, learned)
    _steps(model, seed=1)
    assert torch.equal(_active_set(model.graph), learned)


def test_lottery_ticket_restores_initial_weights():
    model = TinyClassifier("static", "dnw", **SMALL)
    initial = copy.deepcopy(model.state_dict())
    _steps(model)
    learned = torch.topk(model.graph.weight.detach().abs(), model.graph.wiring.num_active).indices.sort().values
    initial_set = torch.topk(initial["graph.weight"].abs(), model.graph.wiring.num_active).indices.sort().values
    assert not torch.equal(learned, initial_set)
    freeze_wiring(model, reset_to=initial)
    for name, value in model.state_dict().items():
        if name in initial:
            assert torch.equal(value, initial[name]), name
    assert torch.equal(_active_set(model.graph), learned)
    assert isinstance(model.graph, StaticGraph)


def test_tiny_same_seed_same_model():
    a, b = TinyClassifier("static", **SMALL, seed=3), TinyClassifier("static", **SMALL, seed=3)
    c = TinyClassifier("static", **SMALL, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.graph.weight, c.graph.weight)


def test_classifiers_reject_bad_batches_naming_x():
    tiny = TinyClassifier(kind="static")
    digits = DigitsGraphClassifier(kind="discrete", as_images=True)
    for model, good in ((tiny, torch.randn(2, 3, 32, 32)), (digits, torch.randn(2, 1, 8, 8))):
        c = good.size(1)
        for x, err, msg in ((torch.randn(0, c, *good.shape[2:]), ValueError, "non-empty batch"),
                            (torch.randn(2, c + 1, *good.shape[2:]), ValueError, f"{c} channels at dim 1"),
                            (good.long(), TypeError, "floating-point"),
                            (good.double(), TypeError, "differs from the parameters")):
            with pytest.raises(err, match=msg):
                model(x)
        assert model(good).shape == (2, 10)



@pytest.mark.parametrize("cls, kwargs, name", [
    (TinyClassifier, dict(kind="static", rtol=1e-4), "rtol"),
    (TinyClassifier, dict(kind="static", adjoint=False), "adjoint"),
    (TinyClassifier, dict(kind="discrete", blocks=(32, 768)), "blocks"),
    (TinyClassifier, dict(kind="continuous", steps=3), "steps"),
    (TinyClassifier, dict(kind="discrete", method="rk4"), "method"),
    (DigitsGraphClassifier, dict(kind="discrete", num_blocks=3), "num_blocks"),
    (DigitsGraphClassifier, dict(kind="static", options={"step_size": 0.5}), "options"),
    (DigitsGraphClassifier, dict(kind="static", as_images=False, num_inputs=20), "num_inputs"),
    (DigitsGraphClassifier, dict(kind="static", as_images=True, head="identity"), "head"),
])
def test_kind_specific_arguments_are_not_silently_ignored(cls, kwargs, name):
    # an argument the chosen kind (or version) does not use is an error, even at its default value
    with pytest.raises(ValueError, match=rf"^{name}: used only with"):
        cls(**kwargs)


@pytest.mark.parametrize("kwargs, err, name", [
    (dict(rtol=0.0), ValueError, "rtol"), (dict(atol=-1e-3), ValueError, "atol"),
    (dict(rtol=True), ValueError, "rtol"), (dict(method="euler2"), ValueError, "method"),
    (dict(method=["dopri5"]), TypeError, "method"), (dict(adjoint=1), TypeError, "adjoint"),
    (dict(options=[("step_size", 0.5)]), TypeError, "options"),
])
def test_bad_solver_arguments_are_named(kwargs, err, name):
    with pytest.raises(err, match=rf"^{name}: expected"):
        TinyClassifier("continuous", **kwargs, **small("continuous"))
    if name != "adjoint":  # the digits classifier has no adjoint argument
        with pytest.raises(err, match=rf"^{name}: expected"):
            DigitsGraphClassifier("continuous", **kwargs)


def test_kind_specific_arguments_reach_their_kind():
    assert TinyClassifier("discrete", steps=2, **small("discrete")).graph.steps == 2
    m = TinyClassifier("continuous", rtol=1e-4, atol=1e-5, method="bosh3", **small("continuous"))
    assert (m.graph.rtol, m.graph.atol, m.graph.method) == (1e-4, 1e-5, "bosh3")
    assert isinstance(DigitsGraphClassifier("static", as_images=False, head="identity").fc, torch.nn.Identity)
    assert DigitsGraphClassifier("static", num_inputs=4, num_outputs=6).graph.inputs.numel() == 4


@pytest.mark.parametrize("kind", ["static", "discrete", "continuous"])
@pytest.mark.parametrize("dtype, rel_tol", [(torch.float16, 0.1), (torch.bfloat16, 0.25)])
def test_training_step_under_autocast_matches_float32(kind, dtype, rel_tol):
    # autocast on CPU (as on a GPU): the graph products run in the features' half precision and every
    # gradient comes back in its parameter's dtype, close to the float32 step's
    extra = {"static": dict(blocks=[16, 48, 48, 48]), "continuous": dict(method="rk4", options={"step_size": 0.5}),
             "discrete": {}}[kind]
    model = TinyClassifier(kind=kind, num_nodes=160, num_inputs=16, num_outputs=20, **extra)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen)
    ref_loss = F.cross_entropy(model(x), y)
    ref_loss.backward()
    ref = model.graph.weight.grad.clone()
    model.zero_grad()
    with torch.autocast("cpu", dtype=dtype):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    got = model.graph.weight.grad
    assert all(p.grad.dtype == p.dtype for p in model.parameters() if p.grad is not None)
    assert abs(loss.item() - ref_loss.item()) < 0.05
    # the straight-through gradient of every candidate, to the precision of the half-precision products
    # (float16 keeps about 3.3 significant digits, bfloat16 about 2.4)
    assert float((got - ref).norm() / ref.norm()) < rel_tol
    assert float(F.cosine_similarity(got, ref, dim=0)) > 0.98
