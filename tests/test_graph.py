"""Tests of :class:`neuralgraphs.graph.NeuralGraph` and the candidate generators.

Every expectation is computed independently: edge sets from Python sets, levels and acyclicity from
networkx, adjacency from ``networkx.from_numpy_array``.
"""

import re

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.generators import blocked_dag, complete_dag, complete_graph
from neuralgraphs.graph import NeuralGraph

SETTINGS = settings(max_examples=40, deadline=None)


# ----------------------------------------------------------------------------- helpers


def edge_list(ei):
    return [(int(s), int(t)) for s, t in ei.t().tolist()]


def assert_sorted_by_target_source(ei):
    keys = [(t, s) for s, t in edge_list(ei)]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


def nx_of(num_nodes, edges):
    g = nx.DiGraph()
    g.add_nodes_from(range(num_nodes))
    g.add_edges_from(edges)
    return g


def nx_longest_path_levels(g):
    """Level of every node: 0 without parents, else 1 + max over parents (networkx topological sort)."""
    level = {}
    for v in nx.topological_sort(g):
        preds = list(g.predecessors(v))
        level[v] = 1 + max(level[u] for u in preds) if preds else 0
    return level


def nx_generation_levels(g):
    return {v: i for i, gen in enumerate(nx.topological_generations(g)) for v in gen}


@st.composite
def random_dags(draw, min_nodes=2, max_nodes=12):
    """A DAG whose topological order is a random permutation of the labels (so not just i < j)."""
    n = draw(st.integers(min_nodes, max_nodes))
    perm = draw(st.permutations(list(range(n))))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, min_size=1, max_size=len(pairs)))
    return n, [(perm[i], perm[j]) for i, j in chosen]


@st.composite
def random_digraphs(draw, max_nodes=8):
    """Any directed graph without duplicate edges, self-loops included."""
    n = draw(st.integers(1, max_nodes))
    pairs = [(i, j) for i in range(n) for j in range(n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, min_size=1, max_size=len(pairs)))
    return n, chosen


# ----------------------------------------------------------------------------- construction


def test_construction_sorts_by_target_then_source_and_permutes_edge_attrs():
    edges = [(3, 0), (0, 2), (1, 2), (2, 0), (0, 1), (4, 1), (1, 0), (3, 4)]
    ei = torch.tensor(edges, dtype=torch.long).t()
    labels = [f"{s}->{t}" for s, t in edges]
    g = NeuralGraph(5, ei, edge_attrs={"label": labels, "pos": list(range(len(edges)))})
    expected = sorted(edges, key=lambda e: (e[1], e[0]))
    assert edge_list(g.edge_index) == expected
    assert g.edge_index.dtype == torch.long
    for j, (s, t) in enumerate(edge_list(g.edge_index)):
        assert g.edge_attrs["label"][j] == f"{s}->{t}"
        assert edges[g.edge_attrs["pos"][j]] == (s, t)
    assert g.num_edges == len(edges)


@SETTINGS
@given(data=random_digraphs(max_nodes=10), seed=st.integers(0, 2**31 - 1))
def test_construction_sorted_and_attrs_aligned_hypothesis(data, seed):
    n, edges = data
    rng = np.random.default_rng(seed)
    edges = [edges[i] for i in rng.permutation(len(edges))]
    ei = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    g = NeuralGraph(n, ei, edge_attrs={"e": [tuple(e) for e in edges]})
    assert_sorted_by_target_source(g.edge_index)
    assert set(edge_list(g.edge_index)) == set(edges)
    assert g.edge_attrs["e"] == edge_list(g.edge_index)
    # in_degree / out_degree / ptr against networkx
    ref = nx_of(n, edges)
    assert g.in_degree().tolist() == [ref.in_degree(v) for v in range(n)]
    assert g.out_degree().tolist() == [ref.out_degree(v) for v in range(n)]
    for v in range(n):
        into_v = edge_list(g.edge_index[:, int(g.ptr[v]):int(g.ptr[v + 1])])
        assert into_v == sorted((u, v) for u in ref.predecessors(v))


def test_default_inputs_and_outputs_are_sources_and_sinks():
    edges = [(0, 2), (1, 2), (2, 3), (2, 4)]
    g = NeuralGraph(6, torch.tensor(edges).t())  # node 5 isolated
    ref = nx_of(6, edges)
    assert g.inputs.tolist() == sorted(v for v in ref if ref.in_degree(v) == 0)
    assert g.outputs.tolist() == sorted(v for v in ref if ref.out_degree(v) == 0)


def test_inputs_outputs_given_as_indices_or_masks():
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    g = NeuralGraph(4, ei, inputs=[0, 2], outputs=torch.tensor([False, False, False, True]))
    assert g.inputs.tolist() == [0, 2]
    assert g.outputs.tolist() == [3]
    g2 = NeuralGraph(4, ei, inputs=np.array([1]), outputs=torch.tensor([2, 3]))
    assert g2.inputs.tolist() == [1]
    assert g2.outputs.tolist() == [2, 3]


def test_from_edge_list():
    edges = [(0, 3), (2, 1), (1, 3)]
    g = NeuralGraph.from_edge_list(edges)
    assert g.num_nodes == 4
    assert edge_list(g.edge_index) == [(2, 1), (0, 3), (1, 3)]
    g = NeuralGraph.from_edge_list(edges, num_nodes=7)
    assert g.num_nodes == 7
    assert set(edge_list(g.edge_index)) == set(edges)


@SETTINGS
@given(n=st.integers(1, 9), seed=st.integers(0, 2**31 - 1), p=st.floats(0.1, 0.9))
def test_from_adjacency_row_is_source(n, seed, p):
    rng = np.random.default_rng(seed)
    a = (rng.random((n, n)) < p) * rng.integers(1, 5, size=(n, n))
    if not a.any():
        a[0, n - 1] = 1
    ref = nx.from_numpy_array(a, create_using=nx.DiGraph)
    for adj in (a, torch.from_numpy(a)):
        g = NeuralGraph.from_adjacency(adj)
        assert g.num_nodes == n
        assert set(edge_list(g.edge_index)) == set(ref.edges())
        assert_sorted_by_target_source(g.edge_index)


def test_from_adjacency_is_not_transposed():
    a = np.zeros((3, 3))
    a[0, 2] = 0.5  # source 0 -> target 2
    g = NeuralGraph.from_adjacency(a)
    assert edge_list(g.edge_index) == [(0, 2)]
    assert g.inputs.tolist() == [0, 1]
    assert g.outputs.tolist() == [1, 2]


def _attributed_nx_graph():
    g = nx.DiGraph(name="toy", stage=3)
    g.add_node("in", role="input", size=4)
    g.add_node("a", size=8, kind="conv")
    g.add_node("b", kind="pool")
    g.add_node("out", role="output")
    g.add_edge("b", "out", w0=0.5, tag="x")
    g.add_edge("in", "a", w0=1.5)
    g.add_edge("a", "b", tag="y")
    g.add_edge("in", "b", w0=-2.0, tag="z")
    g.add_edge("a", "out")
    return g


def test_from_networkx_keeps_attributes_and_roles():
    src = _attributed_nx_graph()
    g = NeuralGraph.from_networkx(src)
    labels = list(src.nodes)
    assert g.node_labels == labels
    assert g.num_nodes == 4
    idx = {lab: i for i, lab in enumerate(labels)}
    assert set(edge_list(g.edge_index)) == {(idx[u], idx[v]) for u, v in src.edges}
    assert_sorted_by_target_source(g.edge_index)
    # node attributes, in node order, None where missing
    for key in ("role", "size", "kind"):
        assert g.node_attrs[key] == [src.nodes[v].get(key) for v in labels]
    # edge attributes follow their edges through the sort
    for j, (s, t) in enumerate(edge_list(g.edge_index)):
        d = src.edges[labels[s], labels[t]]
        for key in ("w0", "tag"):
            assert g.edge_attrs[key][j] == d.get(key)
    assert g.graph_attrs == {"name": "toy", "stage": 3}
    assert g.inputs.tolist() == [idx["in"]]
    assert g.outputs.tolist() == [idx["out"]]


def test_from_networkx_inputs_outputs_by_label_override_roles():
    src = _attributed_nx_graph()
    g = NeuralGraph.from_networkx(src, inputs=["a", "in"], outputs=["b"])
    idx = {lab: i for i, lab in enumerate(src.nodes)}
    assert sorted(g.inputs.tolist()) == sorted([idx["a"], idx["in"]])
    assert g.outputs.tolist() == [idx["b"]]


def test_from_networkx_without_roles_uses_sources_and_sinks():
    src = nx.DiGraph([("x", "y"), ("y", "z"), ("w", "z")])
    g = NeuralGraph.from_networkx(src)
    labels = list(src.nodes)
    assert sorted(labels[i] for i in g.inputs.tolist()) == sorted(v for v in src if src.in_degree(v) == 0)
    assert sorted(labels[i] for i in g.outputs.tolist()) == sorted(v for v in src if src.out_degree(v) == 0)


def test_from_networkx_errors():
    src = _attributed_nx_graph()
    with pytest.raises(ValueError, match="inputs"):
        NeuralGraph.from_networkx(src, inputs=["nope"])
    with pytest.raises(ValueError, match="outputs"):
        NeuralGraph.from_networkx(src, outputs=["nope"])
    with pytest.raises(TypeError, match="graph"):
        NeuralGraph.from_networkx(nx.Graph([(0, 1)]))
    with pytest.raises(TypeError, match="graph"):
        NeuralGraph.from_networkx(nx.MultiDiGraph([(0, 1)]))


def test_to_networkx_round_trip_keeps_attributes_and_adds_weight_and_active():
    src = _attributed_nx_graph()
    g = NeuralGraph.from_networkx(src)
    labels = g.node_labels
    weight = torch.arange(g.num_edges, dtype=torch.float32) * 0.25 - 0.5
    active_idx = torch.tensor([0, 2, 3])
    out = g.to_networkx(weight=weight, active=active_idx)
    assert isinstance(out, nx.DiGraph)
    assert list(out.nodes) == list(src.nodes)
    assert out.graph == src.graph
    for v in src.nodes:
        for key, val in src.nodes[v].items():
            assert out.nodes[v][key] == val
        assert "role" in out.nodes[v]
    assert out.nodes["a"]["role"] == "hidden"
    assert set(out.edges) == set(src.edges)
    for j, (s, t) in enumerate(edge_list(g.edge_index)):
        u, v = labels[s], labels[t]
        d = out.edges[u, v]
        for key, val in src.edges[u, v].items():
            assert d[key] == val
        assert set(d) == set(src.edges[u, v]) | {"weight", "active"}
        assert d["weight"] == pytest.approx(float(weight[j]))
        assert d["active"] is (j in active_idx.tolist())
    # a boolean mask gives the same "active" attribute as indices
    mask = torch.zeros(g.num_edges, dtype=torch.bool)
    mask[active_idx] = True
    out2 = g.to_networkx(active=mask)
    assert nx.get_edge_attributes(out2, "active") == nx.get_edge_attributes(out, "active")
    assert "weight" not in next(iter(out2.edges(data=True)))[2]


def test_to_networkx_integer_names_and_roles():
    g = NeuralGraph(4, torch.tensor([[0, 1, 1], [1, 2, 3]]))
    out = g.to_networkx()
    assert list(out.nodes) == [0, 1, 2, 3]
    assert set(out.edges) == {(0, 1), (1, 2), (1, 3)}
    assert [out.nodes[v]["role"] for v in range(4)] == ["input", "hidden", "output", "output"]
    src = _attributed_nx_graph()
    out = NeuralGraph.from_networkx(src).to_networkx(use_labels=False)
    assert list(out.nodes) == list(range(4))


def test_networkx_round_trip_neuralgraph_to_networkx_and_back():
    g = NeuralGraph(6, torch.tensor([[0, 1, 2, 3, 0, 4], [2, 2, 3, 5, 4, 5]]), inputs=[0, 1], outputs=[5],
                    node_attrs={"size": [1, 2, 3, 4, 5, 6]}, edge_attrs={"tag": list("abcdef")},
                    graph_attrs={"name": "g"})
    back = NeuralGraph.from_networkx(g.to_networkx())
    assert torch.equal(back.edge_index, g.edge_index)
    assert back.edge_attrs["tag"] == g.edge_attrs["tag"]
    assert back.node_attrs["size"] == g.node_attrs["size"]
    assert back.inputs.tolist() == g.inputs.tolist()
    assert back.outputs.tolist() == g.outputs.tolist()
    assert back.graph_attrs == {"name": "g"}


def test_networkx_round_trip_keeps_nodes_that_are_input_and_output():
    g = NeuralGraph(3, torch.tensor([[0, 1], [1, 2]]), inputs=[0, 1], outputs=[1, 2])
    back = NeuralGraph.from_networkx(g.to_networkx())
    assert back.inputs.tolist() == [0, 1]
    assert back.outputs.tolist() == [1, 2]


def test_to_networkx_roles_follow_the_graphs_inputs_not_stored_roles():
    # stored roles say "in" is the input; the graph was built with "a" as its input instead
    src = _attributed_nx_graph()
    g = NeuralGraph.from_networkx(src, inputs=["a"], outputs=["out", "b"])
    out = g.to_networkx()
    assert {v: r for v, r in out.nodes(data="role")} == {"in": "hidden", "a": "input", "b": "output",
                                                         "out": "output"}
    back = NeuralGraph.from_networkx(out)
    assert [back.node_labels[i] for i in back.inputs.tolist()] == ["a"]
    assert sorted(back.node_labels[i] for i in back.outputs.tolist()) == ["b", "out"]


def test_to_networkx_active_indices_are_checked():
    g = complete_dag(4)  # 6 candidates
    with pytest.raises(TypeError, match="active: expected a boolean mask or integer edge indices"):
        g.to_networkx(active=torch.tensor([0.5, 1.7]))
    with pytest.raises(ValueError, match=r"active: edge index -1 is out of range; allowed are 0..5"):
        g.to_networkx(active=torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"active: edge index 6 is out of range"):
        g.to_networkx(active=torch.tensor([1, 6]))
    out = g.to_networkx(active=torch.tensor([], dtype=torch.long))
    assert not any(nx.get_edge_attributes(out, "active").values())


def test_to_networkx_active_only_keeps_every_node_and_the_active_edges():
    g = complete_dag(5, inputs=[0], outputs=[4])  # candidates (u, v) for u < v, in row-major order
    w = torch.arange(10, dtype=torch.float32)
    src, dst = g.edge_index.tolist()
    out = g.to_networkx(weight=w, active=torch.tensor([1, 7]), active_only=True)
    assert sorted(out.nodes) == [0, 1, 2, 3, 4] and out.nodes[4]["role"] == "output"
    assert set(out.edges) == {(src[1], dst[1]), (src[7], dst[7])}
    assert out.edges[src[7], dst[7]] == {"weight": 7.0, "active": True}
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 7]] = True
    assert set(g.to_networkx(active=mask, active_only=True).edges) == set(out.edges)
    with pytest.raises(ValueError, match="active_only: needs the active edges"):
        g.to_networkx(active_only=True)
    with pytest.raises(TypeError, match="active_only"):
        g.to_networkx(active=mask, active_only=1)


def test_node_labels_must_be_distinct_and_hashable():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="node_labels: label 'a' is repeated"):
        NeuralGraph(3, ei, node_labels=["a", "a", "b"])
    with pytest.raises(TypeError, match="node_labels: expected hashable labels"):
        NeuralGraph(3, ei, node_labels=[[0], [1], [2]])


def test_per_node_and_attribute_arguments_name_themselves():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(TypeError, match="^order: expected integers"):
        NeuralGraph(3, ei, order=["a", "b", "c"])
    with pytest.raises(TypeError, match="^order: expected integers"):
        NeuralGraph(3, ei, order=[0, None, 2])
    with pytest.raises(TypeError, match="^blocks: expected integers"):
        NeuralGraph(3, ei, blocks=np.array([0, 1, 2]) + 0j)
    with pytest.raises(TypeError, match=r"^node_attrs\['a'\]: expected a list of 3 values"):
        NeuralGraph(3, ei, node_attrs={"a": 5})
    with pytest.raises(TypeError, match=r"^edge_attrs\['t'\]: expected a list of 2 values"):
        NeuralGraph(3, ei, edge_attrs={"t": "xy"})
    src = _attributed_nx_graph()
    with pytest.raises(TypeError, match="^inputs: expected a sequence of node labels"):
        NeuralGraph.from_networkx(src, inputs="in")
    with pytest.raises(TypeError, match="^outputs: expected a sequence of node labels"):
        NeuralGraph.from_networkx(src, outputs=3)
    with pytest.raises(TypeError, match="^weight: expected a tensor"):
        complete_dag(3).to_pyg(weight=[1.0, 2.0, 3.0])
    # an empty list is an empty set of nodes (as a recurrent graph without sources has by default)
    assert NeuralGraph(3, ei, inputs=[]).inputs.tolist() == []


def test_repr_counts_distinct_blocks():
    g = NeuralGraph(4, torch.tensor([[0, 1, 2], [2, 3, 3]]), blocks=[0, 0, 5, 5])
    assert "blocks=2" in repr(g)


def test_to_pyg_fields():
    g = blocked_dag([2, 3, 2])
    w = torch.randn(g.num_edges)
    data = g.to_pyg(weight=w)
    assert torch.equal(data.edge_index, g.edge_index)
    assert data.num_nodes == 7
    assert data.input_mask.tolist() == [True, True] + [False] * 5
    assert data.output_mask.tolist() == [False] * 5 + [True, True]
    assert torch.equal(data.edge_weight, w)
    assert data.order.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert data.blocks.tolist() == [0, 0, 1, 1, 1, 2, 2]
    plain = NeuralGraph(3, torch.tensor([[0, 1], [1, 2]])).to_pyg()
    assert "edge_weight" not in plain and "order" not in plain and "blocks" not in plain
    with pytest.raises(ValueError, match="weight"):
        g.to_pyg(weight=torch.ones(g.num_edges + 1))


# ----------------------------------------------------------------------------- levels, acyclicity


@SETTINGS
@given(random_dags())
def test_levels_equal_networkx_longest_path_levels(dag):
    n, edges = dag
    ref = nx_of(n, edges)
    by_gen = nx_generation_levels(ref)
    by_path = nx_longest_path_levels(ref)
    assert by_gen == by_path  # the two networkx-derived references agree
    for ei_edges in (edges, edges[::-1]):
        g = NeuralGraph(n, torch.tensor(ei_edges).t())
        assert g.is_dag
        assert g.levels().tolist() == [by_path[v] for v in range(n)]
        sets = g.level_sets()
        gens = list(nx.topological_generations(ref))
        assert len(sets) == len(gens)
        for s, gen in zip(sets, gens):
            assert s.tolist() == sorted(gen)
        assert g.find_cycle() is None


@SETTINGS
@given(random_digraphs())
def test_is_dag_and_find_cycle_equal_networkx(graph):
    n, edges = graph
    ref = nx_of(n, edges)
    g = NeuralGraph(n, torch.tensor(edges).t())
    assert g.is_dag == nx.is_directed_acyclic_graph(ref)
    cycle = g.find_cycle()
    if g.is_dag:
        assert cycle is None
        g.check_acyclic()
        return
    assert cycle[0] == cycle[-1] and len(cycle) >= 2
    for u, v in zip(cycle[:-1], cycle[1:]):
        assert ref.has_edge(u, v)
    with pytest.raises(ValueError, match="edge_index"):
        g.levels()
    with pytest.raises(ValueError, match="acyclic"):
        NeuralGraph(n, torch.tensor(edges).t(), acyclic=True)


def test_relabel_follows_nodes_and_edges():
    rng = np.random.default_rng(3)
    n = 7
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (4, 6), (5, 6), (2, 5)]
    g = NeuralGraph(n, torch.tensor(edges).t(), inputs=[0], outputs=[6], order=[0, 1, 1, 2, 3, 2, 4],
                    blocks=[0, 0, 0, 1, 1, 1, 2], node_attrs={"name": list("abcdefg")},
                    edge_attrs={"e": [f"{s}{t}" for s, t in edges]}, node_labels=list("ABCDEFG"))
    perm = torch.from_numpy(rng.permutation(n))
    r = g.relabel(perm)
    new_of_old = {int(perm[i]): i for i in range(n)}  # node perm[i] is renamed i
    ref = nx.relabel_nodes(nx_of(n, edges), new_of_old)
    assert set(edge_list(r.edge_index)) == set(ref.edges)
    assert_sorted_by_target_source(r.edge_index)
    for j, (s, t) in enumerate(edge_list(r.edge_index)):
        assert r.edge_attrs["e"][j] == f"{int(perm[s])}{int(perm[t])}"
    assert r.node_attrs["name"] == ["abcdefg"[int(p)] for p in perm]
    assert r.node_labels == ["ABCDEFG"[int(p)] for p in perm]
    assert r.inputs.tolist() == [new_of_old[0]]
    assert r.outputs.tolist() == [new_of_old[6]]
    assert r.order.tolist() == [g.order[int(p)].item() for p in perm]
    assert r.blocks.tolist() == [g.blocks[int(p)].item() for p in perm]
    ref_levels = nx_longest_path_levels(ref)
    assert r.levels().tolist() == [ref_levels[v] for v in range(n)]


def test_relabel_rejects_non_permutation():
    g = NeuralGraph(3, torch.tensor([[0, 1], [1, 2]]))
    with pytest.raises(ValueError, match="perm"):
        g.relabel(torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="perm"):
        g.relabel(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="perm"):
        g.relabel(torch.tensor([0, 1, 3]))


# ----------------------------------------------------------------------------- useful edges and pruning


def nx_useful_edges(num_nodes, edges, inputs, outputs):
    """Edges on some input -> output path of a DAG: source reachable from an input (or an input itself),
    target reaching an output (or an output itself), by networkx descendants / ancestors."""
    g = nx_of(num_nodes, edges)
    fwd = set(inputs).union(*(nx.descendants(g, v) for v in inputs))
    bwd = set(outputs).union(*(nx.ancestors(g, v) for v in outputs))
    return [(u, v) for u, v in edges if u in fwd and v in bwd]


@st.composite
def dags_with_ports(draw):
    n, edges = draw(random_dags(min_nodes=2, max_nodes=10))
    inputs = draw(st.lists(st.integers(0, n - 1), unique=True, min_size=0, max_size=3))
    outputs = draw(st.lists(st.integers(0, n - 1), unique=True, min_size=0, max_size=3))
    shuffle = draw(st.permutations(list(range(len(edges)))))
    return n, [edges[i] for i in shuffle], inputs, outputs


def check_useful_and_pruned(n, edges, inputs, outputs):
    ei = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    names = [f"{u}->{v}" for u, v in edges]
    g = NeuralGraph(n, ei, inputs=inputs, outputs=outputs,
                    edge_attrs={"name": names, "pos": list(range(len(edges)))}, node_labels=list(range(10, 10 + n)))
    expected = nx_useful_edges(n, edges, inputs, outputs)
    mask = g.useful_edges()
    assert mask.dtype == torch.bool and mask.shape == (g.num_edges,)
    assert {e for e, m in zip(edge_list(g.edge_index), mask.tolist()) if m} == set(expected)
    if not expected:
        with pytest.raises(ValueError, match="no candidate edge lies on a path from an input to an output"):
            g.prune_useless()
        return g, expected
    p = g.prune_useless()
    assert set(edge_list(p.edge_index)) == set(expected) and p.num_edges == len(expected)
    assert_sorted_by_target_source(p.edge_index)
    for j, (u, v) in enumerate(edge_list(p.edge_index)):  # attributes follow their edges
        assert p.edge_attrs["name"][j] == f"{u}->{v}"
        assert edges[p.edge_attrs["pos"][j]] == (u, v)
    assert p.inputs.tolist() == g.inputs.tolist() and p.outputs.tolist() == g.outputs.tolist()
    assert p.num_nodes == n and p.node_labels == list(range(10, 10 + n))
    assert bool(p.useful_edges().all())  # pruning is idempotent
    return g, expected


def test_useful_edges_and_prune_useless_by_hand():
    # 0 -> 1 -> 3 is the only input-output path; 2 is unreachable from the input, 4 never reaches the output
    edges = [(0, 1), (1, 3), (2, 3), (1, 4), (2, 4), (0, 4)]
    g, expected = check_useful_and_pruned(5, edges, inputs=[0], outputs=[3])
    assert sorted(expected) == [(0, 1), (1, 3)]
    assert not bool(g.useful_edges().all())
    # with every node an input and an output every edge is useful: prune keeps the whole graph
    check_useful_and_pruned(5, edges, inputs=list(range(5)), outputs=list(range(5)))
    # no edge from an input ever reaches an output
    _, expected = check_useful_and_pruned(5, edges, inputs=[3], outputs=[0])
    assert expected == []


@SETTINGS
@given(dags_with_ports())
def test_useful_edges_and_prune_useless_equal_networkx(data):
    check_useful_and_pruned(*data)


# ----------------------------------------------------------------------------- candidate generators


@pytest.mark.parametrize("n", [2, 3, 10, 33])
def test_complete_dag(n):
    g = complete_dag(n)
    assert g.num_edges == n * (n - 1) // 2
    assert set(edge_list(g.edge_index)) == {(u, v) for u in range(n) for v in range(u + 1, n)}
    ref = nx_of(n, edge_list(g.edge_index))
    assert nx.is_directed_acyclic_graph(ref)
    assert g.is_dag
    assert g.inputs.tolist() == [0]
    assert g.outputs.tolist() == [n - 1]
    assert g.levels().tolist() == list(range(n))


def test_complete_dag_with_order_and_ties():
    order = [2, 0, 1, 0, 2]
    g = complete_dag(5, order=order)
    expected = {(u, v) for u in range(5) for v in range(5) if order[u] < order[v]}
    assert set(edge_list(g.edge_index)) == expected
    assert nx.is_directed_acyclic_graph(nx_of(5, expected))
    assert all(order[s] < order[t] for s, t in edge_list(g.edge_index))
    assert sorted(g.inputs.tolist()) == [1, 3]
    assert sorted(g.outputs.tolist()) == [0, 4]


def test_complete_dag_errors():
    with pytest.raises(ValueError, match="num_nodes"):
        complete_dag(1)
    with pytest.raises(TypeError, match="num_nodes"):
        complete_dag(3.0)
    with pytest.raises(ValueError, match="order"):
        complete_dag(3, order=[0, 1])
    with pytest.raises(ValueError, match="order"):
        complete_dag(3, order=[1, 1, 1])
    with pytest.raises(TypeError, match="order"):
        complete_dag(3, order=[0.0, 1.0, 2.0])


def test_blocked_dag_dnw_layout():
    sizes = [32, 192, 192, 192, 192]
    g = blocked_dag(sizes)
    expected = sum(sizes[i] * sizes[j] for i in range(len(sizes)) for j in range(i + 1, len(sizes)))
    assert expected == 245760
    assert g.num_edges == 245760
    assert g.num_nodes == 800
    block_of = np.repeat(np.arange(5), sizes)
    assert g.blocks.tolist() == block_of.tolist()
    src, dst = g.edge_index.numpy()
    # every edge goes to a later block, and with the count above every such pair is present
    assert (block_of[src] < block_of[dst]).all()
    assert len(set(zip(src.tolist(), dst.tolist()))) == g.num_edges
    assert g.inputs.tolist() == list(range(32))
    assert g.outputs.tolist() == list(range(608, 800))
    assert g.is_dag
    assert g.levels().tolist() == block_of.tolist()
    assert_sorted_by_target_source(g.edge_index[:, :5000])
    keys = g.edge_index[1] * 800 + g.edge_index[0]
    assert bool((keys[1:] > keys[:-1]).all())


def test_blocked_dag_small_against_networkx():
    sizes = [2, 1, 3]
    g = blocked_dag(sizes)
    block_of = [0, 0, 1, 2, 2, 2]
    expected = {(u, v) for u in range(6) for v in range(6) if block_of[u] < block_of[v]}
    assert set(edge_list(g.edge_index)) == expected
    ref = nx_of(6, expected)
    assert nx.is_directed_acyclic_graph(ref)
    assert g.levels().tolist() == [nx_longest_path_levels(ref)[v] for v in range(6)]
    g2 = blocked_dag(sizes, inputs=[2], outputs=[0, 1])
    assert g2.inputs.tolist() == [2] and g2.outputs.tolist() == [0, 1]


def test_blocked_dag_errors():
    with pytest.raises(ValueError, match="block_sizes"):
        blocked_dag([4])
    with pytest.raises(ValueError, match=re.escape("block_sizes[1]")):
        blocked_dag([4, 0, 2])
    with pytest.raises(TypeError, match="block_sizes"):
        blocked_dag("32,192")
    with pytest.raises(TypeError, match="block_sizes"):
        blocked_dag([2, 2.5])


@pytest.mark.parametrize("n", [1, 2, 5])
def test_complete_graph_with_self_loops(n):
    g = complete_graph(n)
    assert g.num_edges == n * n
    ref = nx_of(n, edge_list(g.edge_index))
    assert nx.number_of_selfloops(ref) == n
    assert set(ref.edges) == {(u, v) for u in range(n) for v in range(n)}
    assert g.inputs.tolist() == list(range(n)) and g.outputs.tolist() == list(range(n))
    assert not g.is_dag
    with pytest.raises(ValueError, match="self-loop|cycle"):
        complete_graph(n).check_acyclic()


@pytest.mark.parametrize("n", [2, 5])
def test_complete_graph_without_self_loops(n):
    g = complete_graph(n, self_loops=False)
    assert g.num_edges == n * (n - 1)
    ref = nx_of(n, edge_list(g.edge_index))
    assert nx.number_of_selfloops(ref) == 0
    assert set(ref.edges) == {(u, v) for u in range(n) for v in range(n) if u != v}
    assert g.is_dag == nx.is_directed_acyclic_graph(ref) is False


def test_complete_graph_errors():
    with pytest.raises(ValueError, match="num_nodes"):
        complete_graph(1, self_loops=False)
    with pytest.raises(ValueError, match="num_nodes"):
        complete_graph(0)
    with pytest.raises(TypeError, match="self_loops"):
        complete_graph(3, self_loops=1)


# ----------------------------------------------------------------------------- validation


def test_edge_index_out_of_range():
    with pytest.raises(ValueError, match=r"edge_index.*out of range"):
        NeuralGraph(3, torch.tensor([[0, 3], [1, 2]]))
    with pytest.raises(ValueError, match=r"edge_index.*out of range"):
        NeuralGraph(3, torch.tensor([[0, 1], [-1, 2]]))


def test_edge_index_float_dtype_and_type():
    with pytest.raises(TypeError, match="edge_index"):
        NeuralGraph(3, torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    with pytest.raises(TypeError, match="edge_index"):
        NeuralGraph(3, torch.tensor([[0, 1], [1, 2]], dtype=torch.int32))
    with pytest.raises(TypeError, match="edge_index"):
        NeuralGraph(3, [[0, 1], [1, 2]])


def test_edge_index_wrong_shape():
    with pytest.raises(ValueError, match="edge_index"):
        NeuralGraph(3, torch.tensor([[0, 1], [1, 2], [2, 0]]))
    with pytest.raises(ValueError, match="edge_index"):
        NeuralGraph(3, torch.tensor([0, 1]))


def test_duplicate_edge():
    message = r"^edge_index: duplicate edge 1 -> 2 \(columns 1 and 2\); edges must be distinct$"
    with pytest.raises(ValueError, match=message):
        NeuralGraph(3, torch.tensor([[0, 1, 1], [1, 2, 2]]))


def test_duplicate_edge_names_a_repeated_pair_of_columns():
    # 2 -> 0 sits in columns 0 and 3, 1 -> 1 in columns 1 and 4; whichever the message names, the two
    # columns must hold the edge it names.
    edge_index = torch.tensor([[2, 1, 0, 2, 1], [0, 1, 2, 0, 1]])
    with pytest.raises(ValueError, match="edges must be distinct") as info:
        NeuralGraph(3, edge_index)
    match = re.search(r"duplicate edge (\d+) -> (\d+) \(columns (\d+) and (\d+)\)", str(info.value))
    u, v, a, b = map(int, match.groups())
    assert a < b
    assert edge_index[:, a].tolist() == edge_index[:, b].tolist() == [u, v]


def test_self_loop_with_acyclic_names_the_node():
    ei = torch.tensor([[0, 1, 2], [1, 2, 2]])
    with pytest.raises(ValueError, match=r"edge_index.*self-loop.*2 -> 2"):
        NeuralGraph(3, ei, acyclic=True)
    assert not NeuralGraph(3, ei).is_dag  # allowed without acyclic=True


def test_cycle_with_acyclic_names_the_cycle_nodes():
    edges = [(0, 1), (1, 2), (2, 3), (3, 1), (0, 4)]
    with pytest.raises(ValueError, match="edge_index") as info:
        NeuralGraph(5, torch.tensor(edges).t(), acyclic=True)
    msg = str(info.value)
    assert "cycle" in msg
    chain = [int(v) for v in re.search(r"(\d+(?: -> \d+)+)", msg).group(1).split(" -> ")]
    assert chain[0] == chain[-1]
    assert set(chain) == {1, 2, 3}
    for u, v in zip(chain[:-1], chain[1:]):
        assert (u, v) in edges


def test_inputs_outputs_validation():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"inputs.*out of range"):
        NeuralGraph(3, ei, inputs=[0, 3])
    with pytest.raises(ValueError, match=r"outputs.*out of range"):
        NeuralGraph(3, ei, outputs=[-1])
    with pytest.raises(TypeError, match="inputs"):
        NeuralGraph(3, ei, inputs=[0.5])
    with pytest.raises(ValueError, match="outputs"):
        NeuralGraph(3, ei, outputs=[2, 2])
    with pytest.raises(ValueError, match="inputs"):
        NeuralGraph(3, ei, inputs=torch.tensor([True, False]))


def test_empty_edge_set():
    # nodes without candidate edges are a graph (a RandWire stage of isolated nodes); a budget on it is not
    for g in (NeuralGraph(3, torch.empty(2, 0, dtype=torch.long), inputs=[0], outputs=[0]),
              NeuralGraph.from_edge_list([], num_nodes=3), NeuralGraph.from_adjacency(np.zeros((3, 3)))):
        assert g.num_edges == 0 and g.edge_index.shape == (2, 0) and g.is_dag
        assert g.levels().tolist() == [0, 0, 0]
    from neuralgraphs.wiring import TopKWiring
    with pytest.raises(ValueError, match="^k: "):
        TopKWiring(NeuralGraph.from_edge_list([], num_nodes=3), k=1)
    with pytest.raises(ValueError, match="edges"):
        NeuralGraph.from_edge_list([])  # no node count to infer


@pytest.mark.parametrize("n", [0, -2])
def test_num_nodes_not_positive(n):
    with pytest.raises(ValueError, match="num_nodes"):
        NeuralGraph(n, torch.tensor([[0], [0]]))


def test_num_nodes_type():
    with pytest.raises(TypeError, match="num_nodes"):
        NeuralGraph(True, torch.tensor([[0], [0]]))
    with pytest.raises(TypeError, match="num_nodes"):
        NeuralGraph(3.0, torch.tensor([[0], [1]]))


def test_order_violation():
    with pytest.raises(ValueError, match=r"edge_index.*2 -> 1.*order"):
        NeuralGraph(3, torch.tensor([[0, 2], [1, 1]]), order=[0, 1, 2])
    with pytest.raises(ValueError, match="edge_index.*order"):  # equal ranks are a violation too
        NeuralGraph(3, torch.tensor([[0], [1]]), order=[1, 1, 2])
    with pytest.raises(ValueError, match="order"):
        NeuralGraph(3, torch.tensor([[0], [1]]), order=[0, 1])
    with pytest.raises(TypeError, match="order"):
        NeuralGraph(3, torch.tensor([[0], [1]]), order=[0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="blocks"):
        NeuralGraph(3, torch.tensor([[0], [1]]), blocks=[0.0, 1.0, 2.0])


def test_attribute_validation():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="node_attrs"):
        NeuralGraph(3, ei, node_attrs={"a": [1, 2]})
    with pytest.raises(ValueError, match="edge_attrs"):
        NeuralGraph(3, ei, edge_attrs={"a": [1, 2, 3]})
    with pytest.raises(ValueError, match="node_labels"):
        NeuralGraph(3, ei, node_labels=["a"])
    with pytest.raises(TypeError, match="acyclic"):
        NeuralGraph(3, ei, acyclic=1)


def test_from_adjacency_wrong_shape():
    with pytest.raises(ValueError, match="adjacency"):
        NeuralGraph.from_adjacency(np.ones((2, 3)))


def test_from_edge_list_rejects_triples():
    with pytest.raises((TypeError, ValueError), match="edges"):
        NeuralGraph.from_edge_list([(0, 1, 2), (3, 4, 5)])


def test_from_edge_list_rejects_float_ids():
    with pytest.raises(TypeError, match="edges"):
        NeuralGraph.from_edge_list([(0.5, 1), (1, 2)])
