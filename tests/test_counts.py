"""Effective edges, live nodes, parameter and multiply-add counts against networkx and hand counts."""

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.analysis import count_flops, count_parameters, effective_edges, live_nodes
from neuralgraphs.analysis.counts import effective_edge_mask
from neuralgraphs.dynamics import ContinuousTimeGraph, DiscreteTimeGraph, StaticGraph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.models import DigitsGraphClassifier, TinyClassifier
from neuralgraphs.nodes import Activation, NodeAffine, NodeSequential, image_node_op, vector_node_op


def nx_reference(module, zero_preserving=True):
    """(effective edge mask, live node mask) from networkx on the active subgraph.  With node operations
    that do not map zeros to zeros every node carries a signal, not only those an input reaches."""
    with torch.no_grad():
        mask = module.active().mask
    g = module.graph
    src, dst = g.edge_index
    act = nx.DiGraph()
    act.add_nodes_from(range(g.num_nodes))
    act.add_edges_from([(int(s), int(t)) for s, t, a in zip(src, dst, mask) if a])
    fwd = set(g.inputs.tolist()) if zero_preserving else set(range(g.num_nodes))
    for v in g.inputs.tolist():
        fwd |= nx.descendants(act, v)
    bwd = set(g.outputs.tolist())
    for v in g.outputs.tolist():
        bwd |= nx.ancestors(act, v)
    eff = torch.tensor([bool(a) and int(s) in fwd and int(t) in bwd for s, t, a in zip(src, dst, mask)])
    sources = {int(s) for s, e in zip(src, eff) if e}
    live = torch.tensor([v in fwd and (v in sources or v in set(g.outputs.tolist())) for v in range(g.num_nodes)])
    return eff, live


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 12), kind=st.sampled_from(["static", "discrete", "continuous"]),
       frac=st.floats(0.1, 1.0), zero_preserving=st.booleans())
def test_effective_edges_and_live_nodes_match_networkx(seed, n, kind, frac, zero_preserving):
    rng = np.random.default_rng(seed)
    static = kind == "static"
    pairs = [(s, t) for s in range(n) for t in range(n) if (s < t if static else True) and rng.random() < 0.5]
    pairs = pairs or [(0, n - 1)]
    graph = NeuralGraph.from_edge_list(pairs, num_nodes=n, inputs=[0], outputs=[n - 1, n // 2])
    k = max(1, int(frac * graph.num_edges))
    torch.manual_seed(seed)
    # tanh alone maps zeros to zeros; the affine map's bias does not
    op = NodeSequential(Activation("tanh")) if zero_preserving else vector_node_op(n)
    if static:
        m = StaticGraph(graph, op, "dnw", k=k)
    elif kind == "discrete":
        m = DiscreteTimeGraph(graph, op, None, "dnw", k=k)
    else:
        m = ContinuousTimeGraph(graph, op, None, "dnw", k=k, method="euler", options={"step_size": 0.5})
    # static and discrete-time graphs silence the nodes no input reaches, whatever their operation
    eff, live = nx_reference(m, zero_preserving or kind != "continuous")
    assert torch.equal(effective_edge_mask(m), eff)
    assert effective_edges(m) == int(eff.sum())
    assert torch.equal(live_nodes(m), live)


def test_dead_branch_is_not_counted():
    # 0 -> 1 -> 3 (output); 0 -> 2 dead end; 4 -> 3 from a node no input reaches
    graph = NeuralGraph.from_edge_list([(0, 1), (1, 3), (0, 2), (4, 3)], inputs=[0], outputs=[3])
    # ReLU -> 3x3 conv without bias maps zeros to zeros: node 4 contributes nothing
    m = StaticGraph(graph, image_node_op(5, order="relu-conv"), "complete")
    assert effective_edges(m) == 2
    labels = m.graph.node_labels
    live = {labels[i] for i in live_nodes(m).nonzero().view(-1).tolist()}
    assert live == {0, 1, 3}
    # parameters: 4 active edges + 3 live nodes x 9 (3x3 node convolution)
    assert count_parameters(m) == 4 + 3 * 9
    assert count_parameters(m, effective=False) == 4 + 5 * 9


def test_a_node_without_input_is_silent_even_when_its_operation_has_a_bias():
    # the same graph with a biased affine map: f(0) = tanh(b4) != 0, but the static graph silences node 4,
    # which no input reaches, so its edge to the output is not effective and node 4 is not live
    graph = NeuralGraph.from_edge_list([(0, 1), (1, 3), (0, 2), (4, 3)], inputs=[0], outputs=[3])
    torch.manual_seed(0)
    m = StaticGraph(graph, vector_node_op(5, activation="tanh"), "complete").double()
    with torch.no_grad():
        for p in m.node_op.parameters():
            p.normal_()
    labels = m.graph.node_labels
    assert effective_edges(m) == 2
    assert {labels[i] for i in live_nodes(m).nonzero().view(-1).tolist()} == {0, 1, 3}
    assert count_parameters(m) == 4 + 3 * 2
    # the claim behind the counts, checked on the outputs: zeroing the non-effective edges (the one from
    # node 4 included) changes nothing, zeroing an effective one does
    x = torch.randn(6, 1, dtype=torch.float64)
    out = m(x)
    src = [labels[i] for i in m.graph.edge_index[0].tolist()]
    dst = [labels[i] for i in m.graph.edge_index[1].tolist()]
    eff = effective_edge_mask(m)
    assert not eff[[j for j in range(len(src)) if (src[j], dst[j]) == (4, 3)]].any()
    with torch.no_grad():
        m.weight[~eff] = 0.0
    torch.testing.assert_close(m(x), out)
    with torch.no_grad():
        m.weight[[j for j in range(len(src)) if (src[j], dst[j]) == (1, 3)]] = 0.0
    assert not torch.allclose(m(x), out)


@pytest.mark.parametrize("cls", ["continuous", "discrete"])
def test_dynamic_graph_counts_a_biased_node_without_input_only_where_it_is_not_silenced(cls):
    # a continuous-time graph with a biased operation: node 4 integrates f(0) != 0 and reaches the output;
    # the discrete-time graph silences it at every step
    graph = NeuralGraph.from_edge_list([(0, 1), (1, 3), (4, 3)], inputs=[0], outputs=[3])
    op = NodeSequential(NodeAffine(5), Activation("tanh"))
    if cls == "continuous":
        m = ContinuousTimeGraph(graph, op, None, "complete", method="rk4", options={"step_size": 0.25}).double()
    else:
        m = DiscreteTimeGraph(graph, op, None, "complete", steps=3).double()
    with torch.no_grad():
        op[0].bias.fill_(0.7)  # after construction, which resets the node operation
    x = torch.randn(4, 1, dtype=torch.float64)
    out = m(x)
    eff = effective_edge_mask(m)
    e43 = [j for j, (u, v) in enumerate(m.graph.edge_index.t().tolist()) if (u, v) == (4, 3)]
    with torch.no_grad():
        m.weight[e43] = 0.0
    changed = not torch.allclose(m(x), out)
    assert changed == (cls == "continuous") == bool(eff[e43].all())


def test_count_parameters_digits_model_by_hand():
    model = DigitsGraphClassifier("discrete", "dnw")
    g = model.graph
    live = int(live_nodes(model).sum())
    # stem conv 1->8 3x3 + BN(8); node op conv (9 per node); post op instance norm (2 per node); head 16->10
    expected = 8 * 9 + 16 + g.wiring.num_active + live * (9 + 2) + 16 * 10 + 10
    assert count_parameters(model) == expected
    assert count_parameters(model, effective=False) == sum(p.numel() for p in model.parameters())


STEM_MACS = 16 * 16 * 16 * 3 * 9 + 8 * 8 * 16 * 9 + 8 * 8 * 32 * 16  # conv s2, depthwise s2, 1x1


def test_count_flops_tiny_static_by_hand():
    model = TinyClassifier("static", "dnw")
    live = int(live_nodes(model).sum())
    expected = STEM_MACS + 32000 * 64 + live * 9 * 64 + 100 * 10
    assert count_flops(model, (3, 32, 32)) == expected


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_count_flops_tiny_dynamic_by_hand(kind):
    extra = dict(method="rk4", options={"step_size": 0.5}) if kind == "continuous" else {}
    model = TinyClassifier(kind, "dnw", **extra)
    evals = 5 if kind == "discrete" else 2 * 4  # two rk4 steps of four evaluations
    live = int(live_nodes(model).sum())
    expected = STEM_MACS + evals * (32000 * 64 + live * 9 * 64) + 100 * 10
    assert count_flops(model, (3, 32, 32)) == expected
    assert model.training  # mode restored


def test_count_flops_vector_model_by_hand():
    model = DigitsGraphClassifier("static", "dnw", as_images=False)
    live = int(live_nodes(model).sum())
    # per live node one affine multiply-add; every active edge once; linear head 10 -> 10
    expected = model.graph.wiring.num_active + live + 100
    assert count_flops(model, (64,)) == expected


def test_counts_validate_arguments():
    with pytest.raises(TypeError, match="model"):
        count_parameters("not a model")
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(TinyClassifier("static", num_nodes=20, num_inputs=4, num_outputs=4, blocks=(4, 8, 8)), (0, 3))
    with pytest.raises(ValueError, match="module"):
        live_nodes(torch.nn.Linear(2, 2))


def test_randwire_stage_counts_by_hand():
    # the diamond 0 -> {1, 2} -> 3: one source (0), one sink (3); 3 -> 4 channels, stride 2, input 3 x 8 x 8
    import networkx as nx

    from neuralgraphs.models import RandWireStage

    dag = nx.DiGraph([(0, 1), (0, 2), (1, 3), (2, 3)])
    stage = RandWireStage(dag, in_channels=3, out_channels=4, stride=2, seed=0)
    ci, c, pos = 3, 4, 4 * 4  # the nodes run at 4 x 4
    source = 9 * ci + ci * c + 2 * c  # depthwise, pointwise, BN affine of the source's own operation
    inner = 9 * c + c * c + 2 * c  # each of nodes 1, 2, 3
    # 4 edge logits + 1 input -> source logit
    assert count_parameters(stage) == 4 + 1 + source + 3 * inner
    macs = ((9 * ci + ci * c) * pos  # the source's separable conv at stride 2
            + ci * 8 * 8  # the input -> source scaling
            + 4 * c * pos  # the four hidden edges, one multiply-add per element
            + 3 * (9 * c + c * c) * pos  # nodes 1, 2, 3
            + c * pos)  # the average over the one sink
    assert count_flops(stage, (3, 8, 8)) == macs


def test_dnw_stage_counts_by_hand():
    # 3 hidden nodes: candidates 0 -> v, u -> v (u < v) and v -> 4.  Active: 0 -> 1 -> 2 -> 4 and 0 -> 3;
    # node 3 reaches no output, so it is not live and its in-edge is not effective
    from neuralgraphs.models import DNWStage

    stage = DNWStage(3, in_channels=4, out_channels=4, k=4, stride=1, seed=0)
    edges = [tuple(e) for e in stage.graph.edge_index.t().tolist()]
    labels = list(stage.graph.node_labels)
    keep = {(0, 1), (1, 2), (2, 4), (0, 3)}
    with torch.no_grad():
        stage.weight.copy_(torch.tensor([1.0 if (labels[u], labels[v]) in keep else 0.01 for u, v in edges]))
    assert {(labels[u], labels[v]) for u, v in (edges[i] for i in stage.active().index.tolist())} == keep
    c, pos = 4, 5 * 5
    hidden = 9 * c + c * c + 2 * c
    # 4 active edges, live hidden nodes 1 and 2, the output node's BN affine
    assert count_parameters(stage) == 4 + 2 * hidden + 2 * c
    # 3 effective edges, the separable convs of nodes 1 and 2 (norms cost nothing)
    assert count_flops(stage, (4, 5, 5)) == 3 * c * pos + 2 * (9 * c + c * c) * pos
