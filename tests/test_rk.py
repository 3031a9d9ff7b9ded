"""The lean Runge-Kutta step against torchdiffeq's own step: same solution, same steps, same gradients."""

import sys
import threading
import time
import types

import pytest
import torch
import torchdiffeq
from torchdiffeq._impl import rk_common

from neuralgraphs.dynamics import ContinuousTimeGraph, _rk
from neuralgraphs.generators import complete_graph
from neuralgraphs.nodes import Activation, NodeAffine, NodeNorm, NodeSequential

ADAPTIVE = ["dopri5", "bosh3", "adaptive_heun", "fehlberg2", "dopri8"]


class _Field(torch.nn.Module):
    """A small nonlinear vector field with parameters; counts evaluations."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(torch.randn(6, 6, generator=g, dtype=torch.float64) * 0.6)
        self.b = torch.nn.Parameter(torch.randn(6, generator=g, dtype=torch.float64) * 0.3)
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.tanh(y @ self.a.T + self.b) * (1 + 0.5 * torch.sin(3 * t)) - 0.2 * y


def _solve(method, lean, requires_t_grad=False):
    f = _Field()
    y0 = torch.linspace(-1, 1, 18, dtype=torch.float64).view(3, 6).requires_grad_()
    t = torch.tensor([0.0, 0.7, 1.5], dtype=torch.float64, requires_grad=requires_t_grad)
    with _rk.lean_stages(method, lean) as used:
        assert used == lean
        y = torchdiffeq.odeint(f, y0, t, method=method, rtol=1e-6, atol=1e-7)
    nfe = f.nfe
    loss = (y[1:] ** 2).sum() + y[-1, :, 0].sin().sum()
    inputs = [f.a, f.b, y0] + ([t] if requires_t_grad else [])
    return y.detach(), nfe, torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_lean_step_matches_torchdiffeq_solution_steps_and_gradients(method):
    y_ref, nfe_ref, g_ref = _solve(method, lean=False)
    y, nfe, g = _solve(method, lean=True)
    assert nfe == nfe_ref
    # float64 rounding of a different summation order (dopri8's 13-stage combinations cancel large terms),
    # far below the solver's tolerance of 1e-6
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-12)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-11)


def test_lean_step_keeps_the_gradient_through_the_initial_step_size_and_times():
    # torchdiffeq's initial step size depends on f(y0), so the first step's dt carries a gradient into the
    # parameters; with t requiring grad the output times do too.  Both paths must match the stock step.
    y_ref, nfe_ref, g_ref = _solve("dopri5", lean=False, requires_t_grad=True)
    y, nfe, g = _solve("dopri5", lean=True, requires_t_grad=True)
    assert nfe == nfe_ref
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lean_step_matches_torchdiffeq_for_complex_states():
    # complex autograd conjugates: the step-size gradient (through the first step) must follow it too
    g = torch.Generator().manual_seed(4)
    a = torch.randn(4, 4, generator=g, dtype=torch.complex128) * 0.5
    y0 = torch.randn(3, 4, generator=g, dtype=torch.complex128, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    results = []
    for lean in (False, True):
        with _rk.lean_stages("dopri5", lean):
            y = torchdiffeq.odeint(lambda t, y: y @ a - 0.1 * y, y0, t, rtol=1e-8, atol=1e-8)
        results.append((y.detach(), torch.autograd.grad(y[-1].abs().sum(), y0)[0]))
    (y_ref, g_ref), (y, g) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_stage_sum_gradcheck():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    ks = [torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    assert torch.autograd.gradcheck(lambda b, c, *k: _rk._stage_sum(b, c, k), (base, c, *ks))
    complex_args = [v.detach().to(torch.complex128).mul(1 + 0.5j).requires_grad_() for v in (base, c, *ks)]
    assert torch.autograd.gradcheck(lambda b, c, *k: _rk._stage_sum(b, c, k), tuple(complex_args))
    out = _rk._stage_sum(base, c, ks)
    torch.testing.assert_close(out, base + sum(c[j] * ks[j] for j in range(3)))


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_step_returns_torchdiffeq_contract(method):
    from torchdiffeq._impl.odeint import SOLVERS

    tab = SOLVERS[method].tableau
    tab = type(tab)(alpha=tab.alpha.double(), beta=[b.double() for b in tab.beta], c_sol=tab.c_sol.double(),
                    c_error=tab.c_error.double())
    a = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def func(t, y, perturb=None):
        return torch.tanh(y @ a) * torch.cos(t)

    y0 = torch.randn(2, 3, dtype=torch.float64)
    t0, dt = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)
    args = (func, y0, func(t0, y0), t0, dt, t0 + dt)
    ours = _rk.runge_kutta_step(*args, tableau=tab)
    stock = _rk._STOCK_STEP(*args, tableau=tab)
    names = ("y1", "f1", "y1_error", "k")
    for name, x, ref in zip(names, ours, stock):
        assert x.shape == ref.shape, name
        torch.testing.assert_close(x, ref, rtol=1e-13, atol=1e-15, msg=name)


class _RefuseScalarReads(torch.utils._python_dispatch.TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket is torch.ops.aten._local_scalar_dense:
            raise AssertionError("a tensor value was read on the host")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_step_reads_the_tableau_on_the_host_once_per_tableau(method):
    # on a GPU every such read waits for the device; torchdiffeq's own step reads the tableau at every step
    from torchdiffeq._impl.odeint import SOLVERS

    stock = SOLVERS[method].tableau
    tab = type(stock)(alpha=stock.alpha.double(), beta=[b.double() for b in stock.beta],
                      c_sol=stock.c_sol.double(), c_error=stock.c_error.double())

    def func(t, y, perturb=None):
        return -y * t

    y0 = torch.randn(2, 3, dtype=torch.float64)
    t0, dt = torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)
    args = (func, y0, func(t0, y0), t0, dt, t0 + dt)
    first = _rk.runge_kutta_step(*args, tableau=tab)  # reads the tableau once
    with _RefuseScalarReads():
        again = _rk.runge_kutta_step(*args, tableau=tab)
    for x, y in zip(first, again):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    with pytest.raises(AssertionError, match="read on the host"):
        with _RefuseScalarReads():
            _rk._STOCK_STEP(*args, tableau=tab)  # the mode does see such reads


def test_lean_stages_restores_torchdiffeq_and_skips_fixed_grid_methods():
    stock = rk_common._runge_kutta_step
    with _rk.lean_stages("dopri5") as used:
        assert used and rk_common._runge_kutta_step is _rk.runge_kutta_step
        with _rk.lean_stages("bosh3"):
            pass
        assert rk_common._runge_kutta_step is _rk.runge_kutta_step  # the outer block still uses it
    assert rk_common._runge_kutta_step is stock
    with pytest.raises(RuntimeError):
        with _rk.lean_stages("dopri5"):
            raise RuntimeError("boom")
    assert rk_common._runge_kutta_step is stock
    for method in ("rk4", "euler", "midpoint", "explicit_adams", "no-such-method"):
        assert not _rk.supports(method)
        with _rk.lean_stages(method) as used:
            assert not used and rk_common._runge_kutta_step is stock
    assert all(_rk.supports(m) for m in ADAPTIVE)


def test_lean_stages_is_thread_safe():
    n_threads, iters = 4, 300
    errors, seen, stores = [], [], []
    barrier = threading.Barrier(n_threads)

    def work():
        try:
            barrier.wait()
            for _ in range(iters):
                with _rk.lean_stages("dopri5") as used:
                    at_entry = rk_common._runge_kutta_step is _rk.runge_kutta_step
                    time.sleep(0)  # let the other threads enter and leave meanwhile
                    seen.append((used, at_entry, rk_common._runge_kutta_step is _rk.runge_kutta_step,
                                 _rk._users >= 1))
                time.sleep(0)  # ... and let this thread find the count at 0 next time
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    class YieldingModule(types.ModuleType):
        # Under the GIL, ``if _users == 0: patch; _users += 1`` has no point where CPython 3.11 switches
        # threads, so an unlocked lean_stages would pass without this.  Yielding inside the store opens the
        # window between reading the user count and updating it, which is what the lock has to close.
        def __setattr__(self, name, value):
            if name == "_runge_kutta_step":
                stores.append(value)
            time.sleep(0)
            super().__setattr__(name, value)

    interval, module_class = sys.getswitchinterval(), rk_common.__class__
    sys.setswitchinterval(1e-6)
    rk_common.__class__ = YieldingModule
    try:
        threads = [threading.Thread(target=work) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        rk_common.__class__ = module_class
        sys.setswitchinterval(interval)
    assert not errors
    assert len(seen) == n_threads * iters
    assert all(all(flags) for flags in seen), f"{sum(not all(f) for f in seen)} blocks ran without the lean step"
    assert _rk._users == 0 and rk_common._runge_kutta_step is _rk._STOCK_STEP
    assert stores and stores[-1] is _rk._STOCK_STEP  # the stores went through the yielding class


@pytest.mark.parametrize("adjoint", [False, True])
def test_continuous_graph_lean_stages_equal_torchdiffeq(adjoint):
    g = complete_graph(12, inputs=torch.arange(3), outputs=torch.arange(9, 12))
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(2))
    results = []
    for lean in (False, True):
        torch.manual_seed(0)
        op = NodeSequential(NodeAffine(12), Activation("tanh"))
        m = ContinuousTimeGraph(g, op, NodeNorm(12, kind="batch"), "dnw", density=0.4, rtol=1e-5, atol=1e-5,
                                adjoint=adjoint, lean_stages=lean).double()
        y = m(x.double())
        loss = (y ** 2).sum()
        loss.backward()
        results.append((y.detach(), m.nfe_forward, [p.grad.clone() for p in m.parameters()]))
    (y0, n0, g0), (y1, n1, g1) = results
    assert n0 == n1
    torch.testing.assert_close(y1, y0, rtol=1e-10, atol=1e-12)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert rk_common._runge_kutta_step is _rk._STOCK_STEP


def test_lean_stages_argument_is_checked():
    g = complete_graph(4, inputs=torch.arange(1), outputs=torch.arange(3, 4))
    with pytest.raises(TypeError, match="lean_stages"):
        ContinuousTimeGraph(g, NodeAffine(4), wiring="complete", lean_stages="yes")
    m = ContinuousTimeGraph(g, NodeAffine(4), wiring="complete", lean_stages=False)
    assert "lean_stages=False" in repr(m)
