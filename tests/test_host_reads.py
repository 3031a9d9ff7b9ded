"""No training step of any model reads a tensor value on the host (on a GPU, every such read makes the step wait).

Two proofs, as the CUDA code paths run on this CPU-only machine:

* on the ``meta`` device, where tensors have shapes but no data: any read (``.item()``, ``.tolist()``,
  ``.numpy()``, ``.cpu()``, ``nonzero()`` of unknown size, a branch on a value) raises, and every code path
  that branches on ``device.type == "cpu"`` takes its GPU branch.  Selection, graph products, node operations,
  the backward and an SGD step run there; the sparse kernels have no meta implementation, so:
* the sparse (CSR) products, and the sampled products that give fixed wirings their weight gradients, on CPU
  tensors under a dispatch mode that refuses scalar reads and outputs sized by the data.

The continuous-time graphs solve with torchdiffeq, whose step control reads the step size and the error on the
host by design (the one exception allowed); their right-hand side is run here by a fixed Euler loop written
in the test.
"""

import pytest
import torch
import torch.nn.functional as F

from neuralgraphs import DiscreteTimeGraph, StaticGraph, blocked_dag, complete_graph, vector_node_op
from neuralgraphs.dynamics import ContinuousTimeGraph
from neuralgraphs.models import DigitsGraphClassifier, DNWStage, RandWireNet, TinyClassifier, digits_network
from neuralgraphs.models import resnet50
from neuralgraphs.nodes import Activation, NodeAffine, NodeSequential
from neuralgraphs.sparse import sparsify


def _euler(self, func, z0, edge_weight):
    """Two Euler steps of the graph's right-hand side (in place of torchdiffeq's solve)."""
    t = torch.zeros((), dtype=z0.dtype, device=z0.device)
    z1 = z0 + 0.5 * func(t, z0)
    return torch.stack([z0, z1 + 0.5 * func(t, z1)])


def _train_step(model, x, y):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):  # the second step starts from moved weights: a new selection
        out = model(x)
        loss = F.cross_entropy(out.reshape(out.size(0), -1)[:, :10], y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _tiny(kind, **kw):
    return TinyClassifier(kind, num_nodes=96, num_inputs=8, num_outputs=16, density=0.1, **kw)


MODELS = {
    "tiny-static": (lambda: _tiny("static", blocks=(8, 40, 48)), (4, 3, 32, 32)),
    "tiny-discrete": (lambda: _tiny("discrete", steps=3), (4, 3, 32, 32)),
    "tiny-continuous": (lambda: _tiny("continuous"), (4, 3, 32, 32)),
    "digits-static": (lambda: DigitsGraphClassifier("static"), (4, 1, 8, 8)),
    "digits-static-vector": (lambda: DigitsGraphClassifier("static", as_images=False), (4, 64)),
    "digits-discrete-vector": (lambda: DigitsGraphClassifier("discrete", as_images=False), (4, 64)),
    "digits-continuous-vector": (lambda: DigitsGraphClassifier("continuous", as_images=False), (4, 64)),
    "randwire-net": (lambda: RandWireNet(num_nodes=8, channels=8, num_classes=10), (2, 3, 32, 32)),
    "randwire-net-dnw": (lambda: RandWireNet(num_nodes=8, channels=8, num_classes=10, wiring="dnw",
                                             num_blocks=3), (2, 3, 32, 32)),
    **{f"digits-{k}": ((lambda k=k: digits_network(k, drop_path=0.2)), (4, 1, 8, 8))
       for k in ("ws", "er", "ba", "dnw", "complete")},
    **{f"sparse-resnet-{b}": ((lambda b=b: sparsify(resnet50(num_classes=10, width=4), 0.1, budget=b,
                                                   dense_first=True)), (2, 3, 32, 32))
       for b in ("uniform", "global", "erk")},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_training_step_reads_nothing_on_the_host(name, monkeypatch):
    monkeypatch.setattr(ContinuousTimeGraph, "_solve", _euler)
    make, shape = MODELS[name]
    torch.manual_seed(0)
    model = make().to("meta").train()
    x = torch.randn(shape).to("meta")
    y = torch.randint(0, 10, (shape[0],)).to("meta")
    _train_step(model, x, y)


def test_the_meta_device_catches_a_host_read():
    # the proof above can fail: a value read on the host raises on meta
    t = torch.ones(3, device="meta")
    for read in (lambda: t.sum().item(), lambda: t.tolist(), lambda: bool(t[0] > 0), lambda: t.nonzero()):
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()


class _RefuseHostReads(torch.utils._python_dispatch.TorchDispatchMode):
    """Raises on a scalar read on the host and on outputs whose size depends on the data."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        packet = func.overloadpacket
        sized_by_data = packet in (torch.ops.aten.nonzero, torch.ops.aten.masked_select) or (
            packet in (torch.ops.aten.index, torch.ops.aten._unsafe_index)
            and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]))
        if packet is torch.ops.aten._local_scalar_dense or sized_by_data:
            raise AssertionError(f"host read: {func}")
        return func(*args, **(kwargs or {}))


def _sparse_models():
    g = blocked_dag([16, 64, 64, 10])
    c = complete_graph(60, inputs=torch.arange(8), outputs=torch.arange(50, 60))
    n = c.num_nodes
    return {
        # fixed wirings: the weight gradient of the active edges alone is a sampled product
        "tiny-static-random": _tiny("static", wiring="random", blocks=(8, 40, 48)),
        "tiny-discrete-no_update": _tiny("discrete", wiring="no_update"),
        # per-node budgets and fixed sets: every level's active edges are known without reading them
        "static-per-node": StaticGraph(g, vector_node_op(g.num_nodes), "dnw", k=2, scope="per_node", backend="csr"),
        "static-random": StaticGraph(g, vector_node_op(g.num_nodes), "random", k=100, backend="csr"),
        # a dynamic graph's full product takes the k active edges of the selection as they are
        "discrete-per-node": DiscreteTimeGraph(c, NodeSequential(NodeAffine(n), Activation("tanh")), None, "dnw",
                                               k=2, scope="per_node", steps=3, backend="csr"),
    }


@pytest.mark.parametrize("name", ["tiny-static-random", "tiny-discrete-no_update", "static-per-node", "static-random",
                                  "discrete-per-node"])
def test_sparse_training_step_reads_nothing_on_the_host(name):
    model = _sparse_models()[name]
    x = torch.randn(4, 3, 32, 32) if name.startswith("tiny") else torch.randn(4, model.inputs.numel())
    y = torch.randint(0, 10, (4,))
    _train_step(model, x, y)  # a first step outside the mode: caches and lazy structures are built
    with _RefuseHostReads():
        _train_step(model, x, y)
    with pytest.raises(AssertionError, match="host read"):
        with _RefuseHostReads():
            next(model.parameters()).sum().item()


def test_dnw_stage_blocks_run_a_block_at_a_time_without_reads():
    stage = DNWStage(12, 4, 4, 30, num_blocks=3).to("meta")
    assert stage.num_levels == 5
    stage(torch.randn(2, 4, 8, 8, device="meta")).sum().backward()
