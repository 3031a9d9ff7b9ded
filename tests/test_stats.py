import re

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuralgraphs.analysis
from neuralgraphs.analysis import dag_statistics
from neuralgraphs.analysis.stats import dag_statistics as stats_module_function


def test_exported_from_the_analysis_layer():
    assert dag_statistics is stats_module_function
    assert "dag_statistics" in neuralgraphs.analysis.__all__


def test_hand_computed():
    # 0 -> 1 -> 3, 0 -> 2 -> 3, 2 -> 4, plus isolated node 5: levels {0, 5}, {1, 2}, {3, 4}.
    dag = nx.DiGraph([(0, 1), (1, 3), (0, 2), (2, 3), (2, 4)])
    dag.add_node(5)
    assert dag_statistics(dag) == {
        "num_nodes": 6, "num_edges": 5, "num_sources": 2, "num_sinks": 3, "num_isolated": 1,
        "depth": 2, "num_levels": 3, "max_level_size": 2,
        "mean_in_degree": 5 / 6, "mean_out_degree": 5 / 6,
    }
    empty = dag_statistics(nx.DiGraph())
    assert empty["num_levels"] == 0 and empty["depth"] == 0 and empty["mean_in_degree"] == 0.0


def _longest_path_edges(edges, n):
    # Independent of networkx: nodes 0..n-1 with edges only from lower to higher numbers, so increasing
    # order is a topological order.
    longest = [0] * n
    for u, v in sorted(edges):
        longest[v] = max(longest[v], longest[u] + 1)
    return max(longest, default=0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.just(n), st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1])))))
def test_matches_a_direct_count(case):
    n, edges = case
    dag = nx.DiGraph()
    dag.add_nodes_from(range(n))
    dag.add_edges_from(edges)
    stats = dag_statistics(dag)
    targets = {v for _, v in edges}
    origins = {u for u, _ in edges}
    assert stats["num_nodes"] == n and stats["num_edges"] == len(edges)
    assert stats["num_sources"] == n - len(targets)
    assert stats["num_sinks"] == n - len(origins)
    assert stats["num_isolated"] == n - len(targets | origins)
    assert stats["depth"] == _longest_path_edges(edges, n)
    # a node's topological generation is the length of the longest path ending at it
    assert stats["num_levels"] == stats["depth"] + 1


def _named_cycle(message):
    match = re.fullmatch(r"graph: has a cycle (.+); expected a DAG", message)
    assert match, message
    return [int(v) for v in match.group(1).split(" -> ")]


def test_cycle_is_named():
    graph = nx.DiGraph([(9, 3), (3, 5), (5, 3)])
    with pytest.raises(ValueError, match=r"^graph: has a cycle 3 -> 5 -> 3; expected a DAG$"):
        dag_statistics(graph)
    with pytest.raises(ValueError, match=r"^graph: has a cycle 4 -> 4; expected a DAG$"):
        dag_statistics(nx.DiGraph([(0, 4), (4, 4)]))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 ** 32), st.integers(3, 15))
def test_named_cycle_is_a_cycle_of_the_graph(seed, n):
    graph = nx.gnp_random_graph(n, 0.4, seed=seed, directed=True)
    if nx.is_directed_acyclic_graph(graph):
        graph.add_edges_from([(0, 1), (1, 2), (2, 0)])
    with pytest.raises(ValueError) as info:
        dag_statistics(graph)
    walk = _named_cycle(str(info.value))
    assert walk[0] == walk[-1] and len(set(walk[:-1])) == len(walk) - 1
    assert all(graph.has_edge(u, v) for u, v in zip(walk, walk[1:]))


def test_rejects_what_is_not_a_digraph():
    with pytest.raises(TypeError, match="^graph: expected a networkx.DiGraph, got Graph"):
        dag_statistics(nx.Graph([(0, 1)]))
    with pytest.raises(TypeError, match="^graph: expected a networkx.DiGraph, got MultiDiGraph"):
        dag_statistics(nx.MultiDiGraph([(0, 1)]))
    with pytest.raises(TypeError, match="^graph: "):
        dag_statistics([(0, 1)])
