import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.train import schedules as S


def _opt(lr=0.4, n_groups=1):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr * (g + 1)} for g in range(n_groups)]
    return torch.optim.SGD(groups, lr=lr)


def _run(sched, opt, n):
    """Learning rates of the first group at scheduler steps 0..n-1."""
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_closed_form_with_warmup():
    opt = _opt(0.4)
    sched = S.cosine(opt, total_steps=20, warmup_steps=5)
    lrs = _run(sched, opt, 25)
    for s in range(5):
        assert lrs[s] == pytest.approx(0.4 * s / 5)
    for s in range(5, 21):
        assert lrs[s] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * (s - 5) / 15)), abs=1e-12)
    assert lrs[5] == pytest.approx(0.4)
    assert lrs[20] == pytest.approx(0.0, abs=1e-12) and lrs[24] == 0.0
    assert lrs[12] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))


def test_cosine_without_warmup_and_groups():
    opt = _opt(0.1, n_groups=2)
    sched = S.cosine(opt, total_steps=10)
    _run(sched, opt, 5)
    # After 5 of 10 steps the factor is cos-midpoint 0.5, applied to each group's own base rate.
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.1)


@settings(max_examples=40, deadline=None)
@given(total=st.integers(2, 500), data=st.data())
def test_cosine_multiplier_invariants(total, data):
    warmup = data.draw(st.integers(0, total - 1))
    m = S.cosine_multiplier(total, warmup)
    values = [m(s) for s in range(total + 3)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[warmup] == pytest.approx(1.0)
    assert values[total] == pytest.approx(0.0, abs=1e-12)
    assert all(a <= b for a, b in zip(values[:warmup], values[1:warmup + 1]))  # rising warm-up
    assert all(a >= b - 1e-15 for a, b in zip(values[warmup:], values[warmup + 1:]))  # then decaying


def test_multistep_dnw_recipe():
    opt = _opt(0.1)
    sched = S.multistep(opt, [80, 120])
    lrs = _run(sched, opt, 160)
    for e in (0, 1, 79):
        assert lrs[e] == pytest.approx(0.1)
    for e in (80, 100, 119):
        assert lrs[e] == pytest.approx(0.01)
    for e in (120, 159):
        assert lrs[e] == pytest.approx(0.001)
    m = S.multistep_multiplier([3, 5], gamma=0.5)
    assert [m(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.25, 0.25]


def test_constant():
    opt = _opt(0.3)
    sched = S.constant(opt)
    assert _run(sched, opt, 10) == [0.3] * 10


@pytest.mark.parametrize("call, exc, word", [
    (lambda o: S.cosine(o, 0), ValueError, "total_steps"),
    (lambda o: S.cosine(o, 10, 10), ValueError, "warmup_steps"),
    (lambda o: S.cosine(o, 10.0), TypeError, "total_steps"),
    (lambda o: S.cosine("sgd", 10), TypeError, "optimizer"),
    (lambda o: S.multistep(o, [120, 80]), ValueError, "milestones"),
    (lambda o: S.multistep(o, 80), TypeError, "milestones"),
    (lambda o: S.multistep(o, [80], gamma=0), ValueError, "gamma"),
])
def test_schedule_validation(call, exc, word):
    with pytest.raises(exc, match=word):
        call(_opt())


def test_label_smoothing_loss_against_dense_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    target = torch.tensor([0, 3, 1, 2, 2, 0])
    eps = 0.2
    logp = torch.log(torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True))
    q = torch.full((6, 4), eps / 4)
    q[torch.arange(6), target] += 1 - eps
    expected = -(q * logp).sum(1).mean()
    assert torch.allclose(S.label_smoothing_loss(logits, target, eps), expected, atol=1e-6)
    plain = -logp[torch.arange(6), target].mean()
    assert torch.allclose(S.label_smoothing_loss(logits, target), plain, atol=1e-6)
    with pytest.raises(ValueError, match="smoothing"):
        S.label_smoothing_loss(logits, target, 1.5)
    with pytest.raises(ValueError, match="target"):
        S.label_smoothing_loss(logits, target.float(), 0.1)
    with pytest.raises(ValueError, match="logits"):
        S.label_smoothing_loss(logits[0], target, 0.1)


class _GraphNorm(torch.nn.Module):  # stands in for a third-party norm layer recognised by name
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.mean_scale = torch.nn.Parameter(torch.ones(n))


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 4)
        self.ln = torch.nn.LayerNorm(4)
        self.gn = _GraphNorm(4)
        self.scores = torch.nn.Parameter(torch.zeros(5))
        self.frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
        self.fc_shared = self.fc  # the same module twice must not duplicate its parameters


def test_param_groups_no_weight_decay():
    net = _Net()
    groups = S.param_groups_no_weight_decay(net, 5e-4)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 5e-4 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(net.conv.weight), id(net.fc.weight), id(net.scores)}
    assert no_decay == {id(net.bn.weight), id(net.bn.bias), id(net.fc.bias), id(net.ln.weight), id(net.ln.bias),
                        id(net.gn.weight), id(net.gn.mean_scale)}
    total = len(groups[0]["params"]) + len(groups[1]["params"])
    assert total == len({id(p) for p in net.parameters() if p.requires_grad})
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # accepted by an optimizer

    groups = S.param_groups_no_weight_decay(net, 1e-4, no_decay_names=["scores"])
    assert id(net.scores) in {id(p) for p in groups[1]["params"]}


def test_param_groups_weight_decay_effect():
    # With SGD and zero gradients, only the decayed group moves: w <- w - lr * wd * w.
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    opt = torch.optim.SGD(S.param_groups_no_weight_decay(net, 0.5), lr=0.1)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.allclose(net[0].weight, torch.full((2, 2), 0.95))
    for p in (net[0].bias, net[1].weight, net[1].bias):
        assert torch.equal(p, torch.ones_like(p))


def test_param_groups_validation():
    with pytest.raises(ValueError, match="weight_decay"):
        S.param_groups_no_weight_decay(torch.nn.Linear(2, 2), -1.0)
    with pytest.raises(ValueError, match="model"):
        S.param_groups_no_weight_decay(torch.nn.ReLU(), 1e-4)
    with pytest.raises(TypeError, match="model"):
        S.param_groups_no_weight_decay("net", 1e-4)
    with pytest.raises(TypeError, match="no_decay_names"):
        S.param_groups_no_weight_decay(torch.nn.Linear(2, 2), 1e-4, no_decay_names="bias")


@pytest.mark.parametrize("bad", [-100, -1, 3])
def test_label_smoothing_loss_refuses_out_of_range_targets(bad):
    # -100 is cross_entropy's ignore_index: without the check that sample would be skipped silently
    logits = torch.randn(4, 3)
    target = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=f"^target: class index {bad} is out of range; allowed are 0..2"):
        S.label_smoothing_loss(logits, target, 0.1)


def test_param_groups_skip_the_node_norms_of_a_randwire_network():
    # a RandWire stage normalises its nodes with NodeNorm (per node and channel): not decayed, like BatchNorm
    from neuralgraphs.models.randwire import digits_network
    from neuralgraphs.nodes import NodeNorm

    model = digits_network("ws", num_nodes=6, channels=4, seed=0)
    groups = S.param_groups_no_weight_decay(model, 1e-4)
    decayed = {id(p) for p in groups[0]["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    norm = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, (torch.nn.BatchNorm2d, NodeNorm))
            for p, _ in mod.named_parameters(recurse=False)}
    assert any(".node_op." in n for n in norm) and any(".source_op." in n for n in norm)
    # the rule written out: everything but biases and the parameters of normalisation layers
    expected = {n for n in names.values() if not n.endswith("bias") and n not in norm}
    assert {names[i] for i in decayed} == expected