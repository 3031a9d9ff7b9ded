"""torch.compile over neuralgraphs models: same outputs and gradients as eager execution.

The selection, the graph products and the ODE solve run eagerly inside a compiled model (clean graph breaks);
everything around them is captured.  ``aot_eager`` exercises graph capture and AOT autograd anywhere;
``inductor`` (code generation) runs where a C++ compiler is installed.
"""

import shutil

import pytest
import torch

from neuralgraphs.models.tiny import TinyClassifier
from neuralgraphs.nn import DNWConv

# notices torch itself raises while dynamo traces (with warnings as errors they would abort the trace)
pytestmark = [
    pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(fn, model, x, y):
    model.zero_grad(set_to_none=True)
    out = fn(x)
    torch.nn.functional.cross_entropy(out, y).backward()
    return out.detach(), _grads(model)


BACKENDS = [
    "aot_eager",
    pytest.param("inductor", marks=pytest.mark.skipif(
        shutil.which("g++") is None and shutil.which("c++") is None, reason="inductor needs a C++ compiler")),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["static", "discrete", "continuous"])
def test_compiled_tiny_classifier_matches_eager(kind, backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    # a small instance of the paper's classifier: 96 nodes, 8 inputs, 16 outputs, 3 blocks for static; the
    # ODE at tight tolerances, where step-size control does not amplify rounding (at 1e-4 the eager and
    # compiled weight gradients differed by 7e-4 of their size with the same steps)
    extra = {"static": dict(blocks=(8, 40, 48)), "discrete": dict(steps=3),
             "continuous": dict(rtol=1e-5, atol=1e-5)}[kind]
    model = TinyClassifier(kind=kind, num_nodes=96, num_inputs=8, num_outputs=16, density=0.1, **extra)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
    ref_out, ref_grads = _run(model, model, x, y)
    compiled = torch.compile(model, backend=backend)
    out, grads = _run(compiled, model, x, y)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    # fused kernels round differently: relative to each gradient, with a floor for near-zero ones (a BN
    # weight whose gradient cancels to ~1e-7 differs by ~1e-9)
    overall = max(float(gr.abs().max()) for gr in ref_grads.values())
    for name, gr in ref_grads.items():
        bound = 1e-4 * float(gr.abs().max()) + 1e-6 * overall
        assert float((grads[name] - gr).abs().max()) <= bound, name
    # the wiring is re-selected in the compiled model too: after an update it follows the weights
    with torch.no_grad():
        model.graph.weight.mul_(torch.rand(model.graph.weight.shape, generator=g))
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


def test_compiled_dnw_conv_matches_eager():
    torch._dynamo.reset()
    conv = DNWConv(density=0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 8, generator=g, requires_grad=True)
    ei = torch.randint(0, 20, (2, 60), generator=g)
    w = torch.randn(60, generator=g, requires_grad=True)
    ref = conv(x, ei, w)
    ref.square().sum().backward()
    gw, gx = w.grad.clone(), x.grad.clone()
    w.grad = x.grad = None
    out = torch.compile(conv, backend="aot_eager")(x, ei, w)
    out.square().sum().backward()
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(w.grad, gw)
    torch.testing.assert_close(x.grad, gx)


def test_importing_neuralgraphs_does_not_load_dynamo():
    # the compile boundaries are set up lazily: importing torch._dynamo costs more than a second
    # (torch_geometric imports it itself, so neuralgraphs.nn is left out)
    import subprocess
    import sys

    code = ("import sys, neuralgraphs, neuralgraphs.dynamics, neuralgraphs.models, neuralgraphs.train, "
            "neuralgraphs.analysis, neuralgraphs.cli; print('torch._dynamo' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    assert res.stdout.strip() == "False"
