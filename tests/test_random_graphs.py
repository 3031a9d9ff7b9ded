import json
import os
import xml.etree.ElementTree as ET

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.analysis import dag_statistics
from neuralgraphs.generators.random_graphs import (
    add_io_nodes,
    ba_graph,
    er_graph,
    load_graph,
    parse_generator,
    random_dag,
    save_graph,
    stage_seeds,
    to_dag,
    ws_graph,
)

SETTINGS = settings(max_examples=40, deadline=None)


def undirected_edges(graph):
    return {frozenset(e) for e in graph.edges()}


def assert_low_to_high_dag(dag, n):
    assert isinstance(dag, nx.DiGraph)
    assert set(dag.nodes) == set(range(n))
    assert nx.is_directed_acyclic_graph(dag)
    assert all(u < v for u, v in dag.edges())


# ----------------------------------------------------------------------------- generators vs networkx


@pytest.mark.parametrize("n,p,seed", [(32, 0.2, 0), (32, 0.2, 7), (10, 0.0, 1), (10, 1.0, 1), (50, 0.05, 3)])
def test_er_equals_networkx(n, p, seed):
    ours = er_graph(n, p, seed)
    ref = nx.erdos_renyi_graph(n, p, seed=seed)
    assert set(ours.nodes) == set(ref.nodes)
    assert undirected_edges(ours) == undirected_edges(ref)


@pytest.mark.parametrize("n,k,p,seed", [(32, 4, 0.75, 0), (32, 4, 0.75, 9), (20, 6, 0.1, 2), (8, 2, 0.0, 0)])
def test_ws_equals_networkx(n, k, p, seed):
    ours = ws_graph(n, k, p, seed)
    ref = nx.watts_strogatz_graph(n, k, p, seed=seed)
    assert undirected_edges(ours) == undirected_edges(ref)


def test_ws_without_rewiring_is_the_ring_lattice():
    n, k = 12, 4
    expected = {frozenset((i, (i + d) % n)) for i in range(n) for d in range(1, k // 2 + 1)}
    assert undirected_edges(ws_graph(n, k, 0.0, seed=5)) == expected


@pytest.mark.parametrize("k", [1, 3, 5])
def test_ws_odd_k_rejected(k):
    with pytest.raises(ValueError, match=r"^k: .*even"):
        ws_graph(32, k, 0.5, seed=0)


# ----------------------------------------------------------------------------- BA (the paper's variant)


@pytest.mark.parametrize("n,m,seed", [(32, 5, 0), (32, 1, 3), (10, 9, 1), (11, 9, 2), (40, 3, 11)])
def test_ba_properties(n, m, seed):
    g = ba_graph(n, m, seed)
    assert set(g.nodes) == set(range(n))
    assert g.number_of_edges() == m * (n - m)
    assert nx.number_of_selfloops(g) == 0
    # Initial nodes are not joined to each other.
    assert all(w >= m for v in range(m) for w in g.neighbors(v))
    # Node m joins every initial node; every later node joins exactly m earlier nodes.
    assert {w for w in g.neighbors(m) if w < m} == set(range(m))
    for t in range(m, n):
        assert sum(1 for w in g.neighbors(t) if w < t) == m
    dag = to_dag(g, "identity")
    sources = [v for v in dag if dag.in_degree(v) == 0]
    assert sources == list(range(m))


def test_ba_differs_from_networkx_star_start():
    # networkx >= 2.6 starts from a star centred on node 0, so its DAG has a single source.
    n, m = 32, 5
    ref = to_dag(nx.barabasi_albert_graph(n, m, seed=0), "identity")
    ours = to_dag(ba_graph(n, m, 0), "identity")
    assert sum(1 for v in ours if ours.in_degree(v) == 0) == m
    assert sum(1 for v in ref if ref.in_degree(v) == 0) == 1


def test_ba_attachment_is_preferential():
    # With m = 1 the graph is a tree grown by preferential attachment: over many seeds the
    # hub-ish early nodes must collect far more edges than late ones, and node degrees must
    # differ more than in uniform attachment. Reference: expected degree of node 1 under uniform
    # attachment is 1 + sum_{t=2}^{n-1} 1/t; preferential attachment gives clearly more.
    n, trials = 60, 200
    deg1 = sum(ba_graph(n, 1, s).degree(1) for s in range(trials)) / trials
    uniform = 1 + sum(1 / t for t in range(2, n))
    assert deg1 > 1.3 * uniform


# ----------------------------------------------------------------------------- DAGs


def test_to_dag_identity_orients_low_to_high():
    g = nx.Graph([(3, 0), (2, 1), (1, 3), (0, 2)])
    dag = to_dag(g, "identity")
    assert set(dag.edges) == {(0, 3), (1, 2), (1, 3), (0, 2)}


def test_to_dag_random_is_a_relabelling():
    g = er_graph(20, 0.3, seed=4)
    dag = to_dag(g, "random", seed=1)
    assert_low_to_high_dag(dag, 20)
    assert nx.is_isomorphic(dag.to_undirected(), g)
    assert sorted(d for _, d in dag.to_undirected().degree()) == sorted(d for _, d in g.degree())
    assert set(to_dag(g, "random", seed=1).edges) == set(dag.edges)
    # Some seed gives a different numbering than the identity.
    assert any(set(to_dag(g, "random", seed=s).edges) != set(to_dag(g, "identity").edges)
               for s in range(5))


def test_to_dag_keeps_attributes():
    g = nx.path_graph(3)
    g.nodes[1]["tag"] = "mid"
    g.edges[0, 1]["w"] = 2.5
    dag = to_dag(g, "identity")
    assert dag.nodes[1]["tag"] == "mid" and dag.edges[0, 1]["w"] == 2.5


def test_to_dag_rejects_bad_input():
    with pytest.raises(TypeError, match="^graph: "):
        to_dag(nx.DiGraph([(0, 1)]), "identity")
    with pytest.raises(ValueError, match="^graph: .*0..N-1"):
        to_dag(nx.Graph([(1, 2)]), "identity")
    with pytest.raises(ValueError, match="^graph: .*0..N-1"):  # 1.0 == 1, yet not an int label
        to_dag(nx.Graph([(0.0, 1.0), (1.0, 2.0)]), "identity")
    with pytest.raises(ValueError, match="^graph: .*self-loop"):
        to_dag(nx.Graph([(0, 0), (0, 1)]), "identity")
    with pytest.raises(ValueError, match="^numbering: "):
        to_dag(nx.path_graph(3), "clockwise")
    with pytest.raises(ValueError, match="^seed: "):
        to_dag(nx.path_graph(3), "random")


def test_random_dag_matches_generators():
    ws = random_dag("ws", 32, 3, k=4, p=0.75)
    assert set(ws.edges) == set(to_dag(ws_graph(32, 4, 0.75, 3), "identity").edges)
    ba = random_dag("BA", 32, 3, m=5)
    assert set(ba.edges) == set(to_dag(ba_graph(32, 5, 3), "identity").edges)
    er = random_dag("er", 32, 3, p=0.2)
    assert nx.is_isomorphic(er.to_undirected(), er_graph(32, 0.2, 3))
    assert er.graph["numbering"] == "random"
    assert ws.graph["generator"] == "ws(k=4, p=0.75)"
    assert parse_generator(ws.graph["generator"]) == ("ws", {"k": 4, "p": 0.75})


def test_random_dag_rejects_bad_params():
    with pytest.raises(ValueError, match="^kind: "):
        random_dag("sbm", 10, 0, p=0.1)
    with pytest.raises(TypeError, match="^kind: "):
        random_dag(3, 10, 0, p=0.1)
    with pytest.raises(TypeError, match="^m: .*missing"):
        random_dag("ba", 10, 0)
    with pytest.raises(TypeError, match="^k: .*not a parameter"):
        random_dag("er", 10, 0, p=0.1, k=2)
    with pytest.raises(ValueError, match="^p: .*\\[0, 1\\]"):
        random_dag("er", 10, 0, p=1.5)
    with pytest.raises(ValueError, match="^n: "):
        random_dag("ba", 3, 0, m=3)
    with pytest.raises(ValueError, match="^k: "):
        random_dag("ws", 4, 0, k=4, p=0.1)


@pytest.mark.parametrize("call,exc,name", [
    (lambda: er_graph(0, 0.5, 0), ValueError, "n"),
    (lambda: er_graph(5.0, 0.5, 0), TypeError, "n"),
    (lambda: er_graph(5, "0.5", 0), TypeError, "p"),
    (lambda: er_graph(5, -0.1, 0), ValueError, "p"),
    (lambda: er_graph(5, 0.5, -1), ValueError, "seed"),
    (lambda: er_graph(5, 0.5, None), TypeError, "seed"),
    (lambda: ba_graph(5, 0, 0), ValueError, "m"),
    (lambda: ba_graph(5, True, 0), TypeError, "m"),
    (lambda: ws_graph(10, 0, 0.5, 0), ValueError, "k"),
    (lambda: ws_graph(10, 4, float("nan"), 0), ValueError, "p"),
    (lambda: stage_seeds(0, -1), ValueError, "num_stages"),
    (lambda: stage_seeds(1.5, 2), TypeError, "seed"),
])
def test_bad_arguments_name_the_argument(call, exc, name):
    with pytest.raises(exc, match=f"^{name}: "):
        call()


# ----------------------------------------------------------------------------- parse_generator


@pytest.mark.parametrize("spec,expected", [
    ("ws(4,0.75)", ("ws", {"k": 4, "p": 0.75})),
    ("WS(k=4, p=0.75)", ("ws", {"k": 4, "p": 0.75})),
    (" ws ( 4 , p = .75 ) ", ("ws", {"k": 4, "p": 0.75})),
    ("ws(p=0.75, k=4)", ("ws", {"k": 4, "p": 0.75})),
    ("er(0.2)", ("er", {"p": 0.2})),
    ("ER(p=1)", ("er", {"p": 1.0})),
    ("er(2e-1,)", ("er", {"p": 0.2})),
    ("ba(5)", ("ba", {"m": 5})),
    ("Ba(m=1)", ("ba", {"m": 1})),
])
def test_parse_generator_accepts(spec, expected):
    kind, params = parse_generator(spec)
    assert (kind, params) == expected
    assert all(type(v) is type(expected[1][k]) for k, v in params.items())


@pytest.mark.parametrize("spec,name", [
    ("ws(3, 0.75)", "k"), ("ws(4.0, 0.75)", "k"), ("ws(4)", "spec"), ("ws(4, 0.5, 1)", "spec"),
    ("er(1.5)", "p"), ("er(nan)", "p"), ("er(inf)", "p"), ("er(-0.1)", "p"), ("er()", "spec"),
    ("er(q=0.1)", "spec"), ("er(p=0.1, p=0.2)", "spec"), ("ws(k=4, 0.5)", "spec"),
    ("ba(0)", "m"), ("ba(2.5)", "m"), ("ba(five)", "m"), ("sbm(3)", "spec"), ("ws", "spec"),
    ("ws(4, 0.75", "spec"), ("", "spec"),
])
def test_parse_generator_rejects(spec, name):
    with pytest.raises(ValueError, match=f"^{name}: "):
        parse_generator(spec)


def test_parse_generator_type():
    with pytest.raises(TypeError, match="^spec: "):
        parse_generator(("ws", 4, 0.75))


# ----------------------------------------------------------------------------- input / output nodes


def check_io(dag, graph, inp, out):
    sources = {v for v in dag if dag.in_degree(v) == 0}
    sinks = {v for v in dag if dag.out_degree(v) == 0}
    assert set(graph.successors(inp)) == sources
    assert set(graph.predecessors(out)) == sinks
    assert graph.in_degree(inp) == 0 and graph.out_degree(out) == 0
    assert not graph.has_edge(inp, out)
    assert graph.number_of_nodes() == dag.number_of_nodes() + 2
    assert graph.number_of_edges() == dag.number_of_edges() + len(sources) + len(sinks)
    assert nx.is_directed_acyclic_graph(graph)
    roles = nx.get_node_attributes(graph, "role")
    assert roles[inp] == "input" and roles[out] == "output"
    assert all(roles[v] == "hidden" for v in dag)
    assert graph.nodes[out]["aggregate"] == "mean"
    assert graph.graph["input_node"] == inp and graph.graph["output_node"] == out
    # Every hidden node lies on a path input -> output.
    assert nx.descendants(graph, inp) >= set(dag) and nx.ancestors(graph, out) >= set(dag)


def test_add_io_nodes_with_isolated_nodes():
    found = 0
    for seed in range(20):
        dag = random_dag("er", 32, seed, p=0.03)
        isolated = set(nx.isolates(dag))
        if not isolated:
            continue
        found += 1
        before = set(dag.edges)
        graph, inp, out = add_io_nodes(dag)
        assert set(dag.edges) == before and "role" not in dag.nodes[0]
        check_io(dag, graph, inp, out)
        for v in isolated:
            assert set(graph.predecessors(v)) == {inp} and set(graph.successors(v)) == {out}
        stats = dag_statistics(graph)
        assert stats["num_sources"] == 1 and stats["num_sinks"] == 1
    assert found > 0


def test_add_io_nodes_labels_and_single_node():
    graph, inp, out = add_io_nodes(random_dag("ws", 32, 0, k=4, p=0.75))
    assert (inp, out) == (32, 33)
    one = nx.DiGraph()
    one.add_node(0)
    graph, inp, out = add_io_nodes(one)
    assert set(graph.edges) == {(inp, 0), (0, out)}


def test_add_io_nodes_rejects_bad_input():
    with pytest.raises(ValueError, match="^dag: .*empty"):
        add_io_nodes(nx.DiGraph())
    with pytest.raises(ValueError, match="^dag: .*cycle"):
        add_io_nodes(nx.DiGraph([(0, 1), (1, 0)]))
    with pytest.raises(TypeError, match="^dag: "):
        add_io_nodes(nx.Graph([(0, 1)]))
    graph, _, _ = add_io_nodes(nx.DiGraph([(0, 1)]))
    with pytest.raises(ValueError, match="^dag: .*input"):
        add_io_nodes(graph)


# ----------------------------------------------------------------------------- stage seeds


def test_stage_seeds_distinct_and_deterministic():
    for seed in (0, 1, 2, 12345):
        seeds = stage_seeds(seed, 8)
        assert len(seeds) == len(set(seeds)) == 8
        assert seeds == stage_seeds(seed, 8)
        assert stage_seeds(seed, 3) == seeds[:3]
        assert all(isinstance(s, int) and 0 <= s < 2 ** 63 for s in seeds)
    # Not seed + i: neighbouring base seeds share no stage seed.
    assert not set(stage_seeds(0, 8)) & set(stage_seeds(1, 8))
    assert stage_seeds(5, 0) == []


def test_stage_seeds_give_different_graphs():
    graphs = [set(random_dag("ws", 32, s, k=4, p=0.75).edges) for s in stage_seeds(0, 3)]
    assert graphs[0] != graphs[1] != graphs[2] != graphs[0]


# ----------------------------------------------------------------------------- save / load


def attributed_graph():
    graph, _, _ = add_io_nodes(random_dag("ws", 16, 2, k=4, p=0.5))
    for i, (u, v) in enumerate(sorted(graph.edges)):
        graph.edges[u, v]["weight"] = 0.25 * i
        graph.edges[u, v]["active"] = i % 2 == 0
    graph.nodes[3]["channels"] = 78
    return graph


def assert_same_graph(a, b):
    assert isinstance(b, nx.DiGraph)
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    assert {(u, v): d for u, v, d in a.edges(data=True)} == {(u, v): d for u, v, d in b.edges(data=True)}
    assert a.graph == b.graph


@pytest.mark.parametrize("suffix", [".json", ".graphml", ".JSON"])
def test_save_load_round_trip(tmp_path, suffix):
    graph = attributed_graph()
    path = tmp_path / f"stage{suffix}"
    save_graph(graph, path)
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left
    loaded = load_graph(str(path))
    assert_same_graph(graph, loaded)


def test_saved_files_are_real_formats(tmp_path):
    graph = attributed_graph()
    save_graph(graph, tmp_path / "g.json")
    with open(tmp_path / "g.json", encoding="utf-8") as fh:
        data = json.load(fh)
    assert data["directed"] is True
    assert {(e["source"], e["target"]) for e in data["edges"]} == set(graph.edges)
    save_graph(graph, tmp_path / "g.graphml")
    root = ET.parse(tmp_path / "g.graphml").getroot()
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    g = root.find("g:graph", ns)
    assert g.get("edgedefault") == "directed"
    edges = {(int(e.get("source")), int(e.get("target"))) for e in g.findall("g:edge", ns)}
    assert edges == set(graph.edges)


def test_save_is_atomic_on_failure(tmp_path):
    path = tmp_path / "g.graphml"
    save_graph(nx.DiGraph([(0, 1)]), path)
    before = path.read_bytes()
    bad = nx.DiGraph([(0, 1)])
    bad.nodes[0]["x"] = [1, 2]
    with pytest.raises(TypeError, match="^dag: "):
        save_graph(bad, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["g.graphml"]


def test_save_load_rejects_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="^path: .*suffix"):
        save_graph(nx.DiGraph([(0, 1)]), tmp_path / "g.pkl")
    with pytest.raises(ValueError, match="^path: .*suffix"):
        load_graph(tmp_path / "g.yaml")
    with pytest.raises(TypeError, match="^path: "):
        save_graph(nx.DiGraph([(0, 1)]), 3)
    with pytest.raises(TypeError, match="^dag: "):
        save_graph(nx.Graph([(0, 1)]), tmp_path / "g.json")
    with open(tmp_path / "u.json", "w", encoding="utf-8") as fh:
        json.dump(nx.node_link_data(nx.path_graph(3), edges="edges"), fh)
    with pytest.raises(ValueError, match="^path: .*undirected"):
        load_graph(tmp_path / "u.json")


@pytest.mark.parametrize("content, words", [
    ({"directed": True, "nodes": [0, 1], "edges": []}, r"entry 0 of 'nodes' is 0, not an object"),
    ({"directed": True, "nodes": ["a", "b"], "edges": []}, r"entry 0 of 'nodes' is \"a\", not an object"),
    ({"directed": True, "nodes": [{"id": 0}, 7], "edges": []}, r"entry 1 of 'nodes' is 7, not an object"),
    ({"directed": True, "nodes": {"0": {}}, "edges": []}, r"'nodes' is \{\"0\": \{\}\}; expected a list"),
    ({"directed": True, "nodes": [{"id": 0}, {"id": 1}], "edges": [[0, 1]]},
     r"entry 0 of 'edges' is \[0, 1\], not an object"),
    ({"directed": True, "nodes": [{"id": 0}], "links": ["x"]}, r"entry 0 of 'links' is \"x\""),
    ({"directed": True, "graph": [], "nodes": [{"id": 0}], "edges": []}, r"'graph' is \[\]; expected an object"),
])
def test_load_names_the_file_when_node_link_entries_are_not_objects(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ValueError, match=r"^path: '.*bad\.json' is not node-link JSON: " + words):
        load_graph(path)


# ----------------------------------------------------------------------------- invariants


def check_invariants(kind, n, seed, **params):
    dag = random_dag(kind, n, seed, **params)
    assert_low_to_high_dag(dag, n)
    again = random_dag(kind, n, seed, **params)
    assert list(dag.edges) == list(again.edges)
    graph, inp, out = add_io_nodes(dag)
    check_io(dag, graph, inp, out)
    stats = dag_statistics(dag)
    assert stats["depth"] == stats["num_levels"] - 1
    return dag


@SETTINGS
@given(n=st.integers(1, 40), p=st.floats(0, 1), seed=st.integers(0, 2 ** 32))
def test_er_invariants(n, p, seed):
    dag = check_invariants("er", n, seed, p=p)
    assert dag.number_of_edges() == er_graph(n, p, seed).number_of_edges()


@SETTINGS
@given(data=st.data(), n=st.integers(2, 40), seed=st.integers(0, 2 ** 32))
def test_ba_invariants(data, n, seed):
    m = data.draw(st.integers(1, n - 1))
    dag = check_invariants("ba", n, seed, m=m)
    assert dag.number_of_edges() == m * (n - m)
    assert [v for v in dag if dag.in_degree(v) == 0] == list(range(m))


@SETTINGS
@given(data=st.data(), n=st.integers(3, 40), p=st.floats(0, 1), seed=st.integers(0, 2 ** 32))
def test_ws_invariants(data, n, p, seed):
    k = 2 * data.draw(st.integers(1, (n - 1) // 2))
    dag = check_invariants("ws", n, seed, k=k, p=p)
    assert undirected_edges(dag) == undirected_edges(nx.watts_strogatz_graph(n, k, p, seed=seed))
