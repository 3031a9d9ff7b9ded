"""Summary statistics of a directed acyclic graph held as a ``networkx.DiGraph``.

Only networkx is needed: the numbers describe the graph itself, not a model built on it, so nothing here
touches the dynamics or the models.
"""

from __future__ import annotations

from typing import Any, Dict, Union

import networkx as nx

__all__ = ["dag_statistics"]


def _check_dag(name: str, graph: Any) -> nx.DiGraph:
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise TypeError(f"{name}: expected a networkx.DiGraph, got {type(graph).__name__}")
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return graph
    # find_cycle gives the closing edge last, so the first node of every edge plus the last target walks
    # the cycle back to its start.
    walk = [u for u, _ in cycle] + [cycle[-1][1]]
    raise ValueError(f"{name}: has a cycle {' -> '.join(map(repr, walk))}; expected a DAG")


def dag_statistics(graph: nx.DiGraph) -> Dict[str, Union[int, float]]:
    r"""Summary numbers of a DAG.

    Args:
        graph (networkx.DiGraph): The DAG.

    Returns:
        dict: ``num_nodes``, ``num_edges``, ``num_sources`` (no predecessors, isolated nodes
        included), ``num_sinks`` (no successors, isolated included), ``num_isolated``, ``depth``
        (edges on a longest path), ``num_levels`` (topological generations, nodes of one level
        can run together), ``max_level_size``, ``mean_in_degree`` and ``mean_out_degree``
        (both :math:`E / N`; 0.0 for an empty graph).

    Raises:
        TypeError: If ``graph`` is not a ``networkx.DiGraph`` (a multigraph is refused too).
        ValueError: If ``graph`` has a cycle; the message names one, e.g.
            ``graph: has a cycle 3 -> 5 -> 3; expected a DAG``.
    """
    graph = _check_dag("graph", graph)
    n = graph.number_of_nodes()
    e = graph.number_of_edges()
    levels = [len(level) for level in nx.topological_generations(graph)]
    return {
        "num_nodes": n,
        "num_edges": e,
        "num_sources": sum(1 for v in graph.nodes if graph.in_degree(v) == 0),
        "num_sinks": sum(1 for v in graph.nodes if graph.out_degree(v) == 0),
        "num_isolated": nx.number_of_isolates(graph),
        "depth": nx.dag_longest_path_length(graph) if n else 0,
        "num_levels": len(levels),
        "max_level_size": max(levels, default=0),
        "mean_in_degree": e / n if n else 0.0,
        "mean_out_degree": e / n if n else 0.0,
    }
