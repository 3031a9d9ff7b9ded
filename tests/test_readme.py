"""Claims of README.rst checked against references written here.

* The "Quick start" code block runs as written (it is read out of README.rst, not copied), and the line it
  prints agrees with the objects it made: the candidate count of ``blocked_dag([64, 48, 48, 10])`` from the
  block sizes, the active count from ``round(0.2 * E)``, the swap count from the two selections, and the
  selection itself from an independent top-k of ``|w|`` and from the networkx wiring.
* "Checks and index structures of an ``edge_index`` are cached per tensor; ``PropagationPlan`` keeps those
  of one selection so time steps and ODE evaluations reuse them": the O(E) work (the range / order check,
  the matrix positions, the CSR row pointers) is counted with spies that call the real functions, and every
  result is compared with a dense matrix product written here.
"""

import ast
import contextlib
import io
import itertools
import re
import textwrap
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

import neuralgraphs.propagate.cache as propagate_cache
import neuralgraphs.propagate.plan as propagate_plan
from neuralgraphs import DiscreteTimeGraph, NeuralGraph, PropagationPlan, vector_node_op
from neuralgraphs.propagate import propagate

README = Path(__file__).resolve().parents[1] / "README.rst"


# ------------------------------------------------------------------------------------------- Quick start


def _section_code_block(text, heading, language="python"):
    """The first ``.. code-block:: <language>`` under the reST section ``heading``, dedented."""
    lines = text.splitlines()
    starts = [i for i in range(len(lines) - 1)
              if lines[i].strip() == heading and set(lines[i + 1].strip()) <= set("-=~^\"'`#*+")
              and len(lines[i + 1].strip()) >= len(heading)]
    assert len(starts) == 1, f"README.rst: expected one section {heading!r}, found {len(starts)}"
    i = starts[0] + 2
    directive = f".. code-block:: {language}"
    while lines[i].strip() != directive:
        # the block must belong to this section, not to a later one
        assert i + 1 < len(lines), f"no {directive} in section {heading!r}"
        assert not (lines[i].strip() and lines[i].strip() and set(lines[i + 1].strip()) <= set("-=~^")
                    and len(lines[i + 1].strip()) >= 3), f"no {directive} in section {heading!r}"
        i += 1
    i += 1
    body = []
    while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
        body.append(lines[i])
        i += 1
    code = textwrap.dedent("\n".join(body)).strip("\n")
    assert code, f"empty {directive} in section {heading!r}"
    return code


def _blocked_dag_candidates(sizes):
    """Candidates of a blocked DAG: every node of block i feeds every node of each later block j > i."""
    return sum(a * b for a, b in itertools.combinations(sizes, 2))


@pytest.fixture(scope="module")
def quick_start():
    code = _section_code_block(README.read_text(encoding="utf-8"), "Quick start")
    namespace = {"__name__": "readme_quick_start"}
    out = io.StringIO()
    with torch.random.fork_rng(devices=[]):  # leave the global generator as other tests expect it
        torch.manual_seed(0)
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README) + ":Quick start", "exec"), namespace)
    return code, namespace, out.getvalue()


def _literals(code):
    """What the Quick start code says, read from its syntax tree: the block sizes given to ``blocked_dag``,
    the ``density`` given to the model and the number of training steps (``range(n)`` of its loop)."""
    found = {}
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "blocked_dag":
                found["sizes"] = ast.literal_eval(node.args[0])
            for kw in node.keywords:
                if kw.arg == "density":
                    found["density"] = ast.literal_eval(kw.value)
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) \
                and node.iter.func.id == "range":
            found["steps"] = ast.literal_eval(node.iter.args[0])
    return found


def test_quick_start_block_is_the_documented_example(quick_start):
    code, _, _ = quick_start
    # the parser found the real block (not an empty or neighbouring one): the DNW model of the digits
    # example, trained, then printed
    assert _literals(code) == {"sizes": [64, 48, 48, 10], "density": 0.2, "steps": 20}
    assert 'wiring="dnw"' in code and "print(" in code and ".backward()" in code


def test_quick_start_prints_numbers_consistent_with_its_objects(quick_start):
    code, ns, printed = quick_start
    lit = _literals(code)
    lines = printed.splitlines()
    assert len(lines) == 1, printed
    m = re.fullmatch(r"(\d+) of (\d+) edges active, (\d+) swapped in (\d+) steps", lines[0])
    assert m is not None, lines[0]
    active, candidates, swapped, steps = map(int, m.groups())
    assert steps == lit["steps"]

    graph, model, before, after = ns["graph"], ns["model"], ns["before"], ns["after"]
    e = _blocked_dag_candidates(lit["sizes"])
    assert candidates == e == graph.num_edges
    # the given density (0.2) of the candidates is kept: round(0.2 * 10048) = 2010
    assert active == round(lit["density"] * e)
    assert after.numel() == active and len(set(after.tolist())) == active
    assert before.numel() == active and len(set(before.tolist())) == active
    assert swapped == len(set(before.tolist()) - set(after.tolist()))
    # the wiring is learned: 20 SGD steps swap edges in (about 200 of 2010 with this seed)
    assert swapped > 0

    # the active edges are the k candidates of largest |w| (ties to the lower index), by numpy's stable sort
    w = model.weight.detach().double().numpy()
    ref = np.sort(np.argsort(-np.abs(w), kind="stable")[:active])
    assert after.tolist() == ref.tolist()


def test_quick_start_wiring_is_a_networkx_digraph_of_the_selection(quick_start):
    code, ns, _ = quick_start
    wiring, graph, model, after = ns["wiring"], ns["graph"], ns["model"], ns["after"]
    assert isinstance(wiring, nx.DiGraph)
    assert wiring.number_of_nodes() == sum(_literals(code)["sizes"]) == graph.num_nodes
    assert wiring.number_of_edges() == graph.num_edges
    src, dst = graph.edge_index.tolist()
    expected_active = {(src[i], dst[i]) for i in after.tolist()}
    active = {(u, v) for u, v, d in wiring.edges(data=True) if d["active"]}
    assert active == expected_active
    weights = model.weight.detach().tolist()
    for i, (u, v) in enumerate(zip(src, dst)):
        assert wiring[u][v]["weight"] == pytest.approx(weights[i], rel=1e-6, abs=1e-7)


# ------------------------------------------------------------------- per-tensor cache of an edge_index


class Spy:
    """Counts calls of a function and how many of them did real work (``is_real(args, result)``), and runs
    the function unchanged."""

    def __init__(self, fn, is_real=None):
        self.fn, self.is_real, self.calls, self.real = fn, is_real, 0, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        result = self.fn(*args, **kwargs)
        if self.is_real is None or self.is_real(args, result):
            self.real += 1
        return result


_UNSET = object()


@pytest.fixture
def spies(monkeypatch):
    """Spies on the O(E) work of an edge_index, judged by what the real functions produce, not by the cache's
    own flags: its range/order check (a call that writes its verdict), the matrix position of every edge
    (a call that returns a tensor not returned before) and the CSR row pointers (every call)."""
    real_check = propagate_cache._Candidates.check

    def check_and_see(self, ei):
        # a check that does its work writes in_range; one answered from the cache leaves it alone
        saved, self.in_range = self.in_range, _UNSET
        real_check(self, ei)
        if self.in_range is _UNSET:
            self.in_range = saved
            return False
        return True

    check = Spy(check_and_see, lambda args, wrote: wrote)
    returned = []

    def new_tensor(args, result):
        fresh = not any(result is r for r in returned)
        returned.append(result)  # kept alive, so that an id is never reused
        return fresh

    flat = Spy(propagate_cache._Candidates.flat, new_tensor)
    rows = Spy(propagate_cache._row_pointers)
    monkeypatch.setattr(propagate_cache._Candidates, "check", lambda self, ei: check(self, ei) and None)
    monkeypatch.setattr(propagate_cache._Candidates, "flat", lambda self, ei: flat(self, ei))
    # the row pointers are built in two modules: the cache (all edges) and a plan (its active subset)
    for module in (propagate_cache, propagate_plan):
        monkeypatch.setattr(module, "_row_pointers", rows)
    return {"check": check, "flat": flat, "rows": rows}


def _edges(num_out, num_in, num_edges, seed):
    """Distinct edges sorted by (target, source), as NeuralGraph stores them."""
    gen = torch.Generator().manual_seed(seed)
    flat = torch.sort(torch.randperm(num_out * num_in, generator=gen)[:num_edges]).values
    return torch.stack([flat % num_in, flat // num_in])


def _dense(edge_index, weight, num_out, num_in):
    """The ``[num_out, num_in]`` matrix with ``A[t, s] = sum of w_e over edges e = (s -> t)``, by a loop."""
    a = torch.zeros(num_out, num_in, dtype=torch.float64)
    for (s, t), w in zip(edge_index.t().tolist(), weight.tolist()):
        a[t, s] += w
    return a


# small: checked in one numpy pass; large: above _SMALL_CHECK (65536 edges), checked by torch in chunks
SIZES = {"small": (40, 30, 300), "large": (300, 260, 70000)}


@pytest.mark.parametrize("size", sorted(SIZES))
@pytest.mark.parametrize("backend", ["dense", "csr"])
def test_same_tensor_is_checked_once_an_equal_new_tensor_again(spies, size, backend):
    num_out, num_in, e = SIZES[size]
    assert (e > propagate_cache._SMALL_CHECK) == (size == "large")
    ei = _edges(num_out, num_in, e, seed=1)  # built once, passed to every call
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(e, generator=gen, dtype=torch.float64)
    a = torch.zeros(num_out, num_in, dtype=torch.float64).index_put_((ei[1], ei[0]), w, accumulate=True)
    if size == "small":
        torch.testing.assert_close(a, _dense(ei, w, num_out, num_in))
    work = ("check", "flat") if backend == "dense" else ("check", "rows")

    for call in range(3):
        x = torch.randn(num_in, 5, generator=gen, dtype=torch.float64)
        out = propagate(x, ei, w, num_nodes=num_out, backend=backend)
        torch.testing.assert_close(out, a @ x, rtol=1e-10, atol=1e-10)
        for name in work:
            # the first call pays the O(E) work, the following calls with the same tensor do not
            assert spies[name].real == 1, (name, call, spies[name].real)
    assert spies["check"].calls >= 3  # the calls did reach the cache (the spy is not bypassed)

    # an equal but new tensor is a new cache entry: the same work is done again, once
    twin = ei.clone()
    assert torch.equal(twin, ei) and twin is not ei
    x = torch.randn(num_in, 5, generator=gen, dtype=torch.float64)
    for _ in range(2):
        out = propagate(x, twin, w, num_nodes=num_out, backend=backend)
        torch.testing.assert_close(out, a @ x, rtol=1e-10, atol=1e-10)
        for name in work:
            assert spies[name].real == 2, (name, spies[name].real)
    # and the first tensor is still cached
    propagate(x, ei, w, num_nodes=num_out, backend=backend)
    for name in work:
        assert spies[name].real == 2


def test_in_place_change_of_the_tensor_is_checked_again(spies):
    ei = _edges(12, 12, 40, seed=3)
    w = torch.randn(40, generator=torch.Generator().manual_seed(4))
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(5))
    propagate(x, ei, w)
    propagate(x, ei, w)
    assert spies["check"].real == 1
    # move the last edge to another source: same tensor, new version, new answer
    s, t = ei[:, -1].tolist()
    free = [c for c in range(12) if c not in ei[0, ei[1] == t].tolist()]
    ei[0, -1] = free[-1]
    ei2 = ei.clone()  # the same edges in a fresh tensor, for the reference only
    out = propagate(x, ei, w)
    assert spies["check"].real == 2
    torch.testing.assert_close(out.double(), _dense(ei2, w, 12, 12) @ x.double(), rtol=1e-6, atol=1e-6)


def test_inference_tensors_are_never_trusted_from_the_cache(spies):
    # an inference tensor has no version counter, so an in-place change could not be seen: it is checked
    # again at every call
    with torch.inference_mode():
        ei = _edges(10, 10, 30, seed=6)
    w = torch.randn(30, generator=torch.Generator().manual_seed(7))
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(8))
    a = _dense(ei, w, 10, 10)
    seen = []
    for _ in range(3):
        torch.testing.assert_close(propagate(x, ei, w).double(), a @ x.double(), rtol=1e-6, atol=1e-6)
        seen.append(spies["check"].real)
    assert seen[0] >= 1 and seen[0] < seen[1] < seen[2]


def test_plan_reuses_its_selection_across_time_steps(spies):
    """One plan, T time steps with their backward pass: the index structures of the selection (row pointers
    of the active edges and of their transpose) are built once, not per step; a second plan over the same
    tensor builds its own selection's structures but does not check the tensor again."""
    n, e, k = 50, 600, 150
    ei = _edges(n, n, e, seed=9)
    gen = torch.Generator().manual_seed(10)
    active = torch.sort(torch.randperm(e, generator=gen)[:k]).values
    mask = torch.zeros(e, dtype=torch.float64)
    mask[active] = 1.0
    w0 = torch.randn(e, generator=gen, dtype=torch.float64)
    z0 = torch.randn(n, 4, generator=gen, dtype=torch.float64)

    def reference(steps):
        """Dense recurrence over the active edges; straight-through: d loss / d w_e = d loss / d A[t, s]
        for every candidate, active or not (the plan's default ``weight_grad="all"``)."""
        w = w0.clone().requires_grad_()
        full = torch.zeros(n, n, dtype=torch.float64).index_put((ei[1], ei[0]), w, accumulate=True)
        off = torch.zeros(n, n, dtype=torch.float64).index_put((ei[1], ei[0]), (w * (1 - mask)).detach(),
                                                              accumulate=True)
        a = full - off  # value: the active edges only; gradient: every candidate's entry
        torch.testing.assert_close(a.detach(), _dense(ei, w0 * mask, n, n))
        z = z0
        for _ in range(steps):
            z = torch.tanh(a @ z)
        z.pow(2).sum().backward()
        return z.detach(), w.grad

    def run(plan, steps):
        w = w0.clone().requires_grad_()
        z = z0.clone().requires_grad_()  # the input gradient needs the transposed structure too
        for _ in range(steps):
            z = torch.tanh(plan(z, w))
        z.pow(2).sum().backward()
        return z.detach(), w.grad

    plan = PropagationPlan(ei, n, n, active=active, backend="csr")
    assert spies["check"].real == 1
    for steps in (1, 6):
        out, grad = run(plan, steps)
        ref_out, ref_grad = reference(steps)
        torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-9)
        if steps == 1:
            per_plan = spies["rows"].real  # the selection's CSR rows and the transposed rows
            assert per_plan >= 1
    # six more steps and their backward pass rebuilt nothing
    assert spies["rows"].real == per_plan
    assert spies["check"].real == 1

    # the next forward's plan over the same tensor, with another selection: no new check of the tensor,
    # but the new selection gets its own row pointers
    other = active[::2].contiguous()
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    out = PropagationPlan(ei, n, n, active=other, backend="csr")(x, w0)
    m = torch.zeros(e, dtype=torch.float64)
    m[other] = 1.0
    torch.testing.assert_close(out, _dense(ei, w0 * m, n, n) @ x, rtol=1e-10, atol=1e-10)
    assert spies["check"].real == 1
    assert spies["rows"].real == per_plan + 1


@pytest.mark.parametrize("backend", ["dense", "csr"])
def test_discrete_time_graph_plans_per_forward_not_per_step(monkeypatch, spies, backend):
    """A recurrent graph: the number of plans of a forward does not grow with the number of steps, and a
    second forward over the module's buffers checks no edge_index again; outputs match a dense recurrence."""
    n = 12
    adj = (torch.rand(n, n, generator=torch.Generator().manual_seed(11)) < 0.5).long()
    graph = NeuralGraph.from_adjacency(adj, inputs=[0, 1, 2], outputs=[9, 10, 11])
    plans = Spy(PropagationPlan.__init__)
    monkeypatch.setattr(PropagationPlan, "__init__", lambda self, *a, **kw: plans(self, *a, **kw))

    counts = {}
    for steps in (2, 7):
        torch.manual_seed(0)
        model = DiscreteTimeGraph(graph, vector_node_op(n), steps=steps, density=0.5, backend=backend).double()
        x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
        model(x)  # the first forward checks the module's buffers
        before_plans, before_checks = plans.calls, spies["check"].real
        out = model(x)
        counts[steps] = plans.calls - before_plans
        assert counts[steps] >= 1
        assert spies["check"].real == before_checks, "a second forward checked a cached edge_index again"

        # dense reference of Z(t + 1) = A f(Z(t)) with A the selected edges' weights
        with torch.no_grad():
            sel = model.active()
            mat = _dense(model.edge_index, sel.weight.double() * sel.mask.double(), n, n)
            z = torch.zeros(4, n, dtype=torch.float64)
            z[:, model.inputs] = x
            for _ in range(steps):
                z = model.node_op(z, slice(0, n)) @ mat.t()
        torch.testing.assert_close(out.detach(), z[:, model.outputs], rtol=1e-9, atol=1e-9)
    assert counts[2] == counts[7]


def test_sparse_networks_block_runs_and_does_what_it_says():
    from neuralgraphs.sparse import CompactConv2d, SparseConv2d

    code = _section_code_block(README.read_text(encoding="utf-8"), "Sparse networks")
    assert "sparsify(" in code and "compact(" in code
    namespace = {"__name__": "readme_sparse"}
    out = io.StringIO()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with contextlib.redirect_stdout(out):
            exec(compile(code, str(README) + ":Sparse networks", "exec"), namespace)
    model, fast, x = namespace["model"], namespace["fast"], namespace["x"]
    # the first convolution dense, the others at 10 % (a hand count per layer), as the printed table says
    assert not isinstance(model.conv1, SparseConv2d)
    layer = model.layer2[0].conv2
    assert layer.num_kept == round(0.1 * layer.weight.numel())
    assert "(weights)" in out.getvalue() and "layer2.0.conv2" in out.getvalue()
    assert any(isinstance(m, CompactConv2d) for m in fast.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5)
