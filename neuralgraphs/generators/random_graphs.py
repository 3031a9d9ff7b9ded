r"""Random graph generators of the RandWire paper, and their conversion to DAGs.

RandWire (Xie et al., ICCV 2019) wires each stage of a network with a random undirected graph
on :math:`N` nodes drawn from one of three classical models, then turns it into a DAG:

* Erdos-Renyi :math:`\mathrm{ER}(P)`: every pair of nodes is joined independently with
  probability :math:`P`. Nodes are numbered in a random order.
* Barabasi-Albert :math:`\mathrm{BA}(M)`: start from :math:`M` isolated nodes; every new node
  joins :math:`M` distinct existing nodes, each chosen with probability proportional to its
  degree. Nodes are numbered in order of addition (the :math:`M` initial nodes first).
* Watts-Strogatz :math:`\mathrm{WS}(K, P)`: a ring where every node is joined to its :math:`K/2`
  neighbours on each side, each edge then rewired with probability :math:`P`. Nodes are numbered
  clockwise around the ring.

Every undirected edge :math:`\{u, v\}` is then directed from the lower to the higher number,
which always gives an acyclic graph. :func:`add_io_nodes` adds the unique input node (feeding
every source) and output node (averaging every sink) that the paper puts around each stage.

All functions are pure: they take a ``seed`` and return a new graph; the same seed gives the
same graph.
"""

from __future__ import annotations

import json
import numbers
import os
import random
import re
import tempfile
from typing import Any, Dict, List, Optional, Tuple, Union

import networkx as nx
import numpy as np

from neuralgraphs._checks import check_int, check_probability, check_seed

__all__ = [
    "GENERATOR_KINDS",
    "er_graph",
    "ba_graph",
    "ws_graph",
    "to_dag",
    "random_dag",
    "parse_generator",
    "add_io_nodes",
    "stage_seeds",
    "save_graph",
    "load_graph",
]

#: Generator kinds understood by :func:`random_dag` and :func:`parse_generator`, with the names
#: of their parameters in positional order.
GENERATOR_KINDS: Dict[str, Tuple[str, ...]] = {"er": ("p",), "ba": ("m",), "ws": ("k", "p")}

_SUFFIXES = (".json", ".graphml")


# ----------------------------------------------------------------------------- validation


def _check_ws_k(k: Any, n: Optional[int] = None) -> int:
    k = check_int("k", k)
    if k % 2:
        # networkx would silently use k - 1 neighbours, which is not the graph that was asked for.
        raise ValueError(f"k: expected an even number of ring neighbours (k/2 on each side), got {k}")
    if k < 2:
        raise ValueError(f"k: expected an even int >= 2, got {k}")
    if n is not None and k >= n:
        raise ValueError(f"k: expected an even int with 2 <= k < n = {n}, got {k}")
    return k


def _check_digraph(name: str, graph: Any, acyclic: bool = True) -> nx.DiGraph:
    if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
        raise TypeError(f"{name}: expected a networkx.DiGraph, got {type(graph).__name__}")
    if acyclic and not nx.is_directed_acyclic_graph(graph):
        raise ValueError(f"{name}: expected a directed acyclic graph, got a graph with a cycle")
    return graph


def _check_labels_range(name: str, graph: nx.Graph) -> int:
    n = graph.number_of_nodes()
    labels = set(graph.nodes)
    # 1.0 == 1 and True == 1, so the set comparison alone would let float and bool labels through
    if labels != set(range(n)) or any(isinstance(v, bool) or not isinstance(v, int) for v in labels):
        raise ValueError(f"{name}: expected nodes labelled by the ints 0..N-1, got labels "
                         f"{sorted(map(repr, labels))[:5]}{'...' if n > 5 else ''}")
    return n


# ----------------------------------------------------------------------------- undirected graphs


def er_graph(n: int, p: float, seed: int) -> nx.Graph:
    r"""Erdos-Renyi graph :math:`G(n, p)`: every pair of nodes is an edge with probability ``p``.

    Built with :func:`networkx.erdos_renyi_graph`, so the result equals networkx's for the same
    seed. Small ``p`` can leave isolated nodes.

    Args:
        n (int): Number of nodes, >= 1. Nodes are labelled ``0..n-1``.
        p (float): Edge probability in [0, 1].
        seed (int): Non-negative random seed.

    Returns:
        networkx.Graph: The undirected graph.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``n < 1``, ``p`` is outside [0, 1] or ``seed < 0``.
    """
    n = check_int("n", n, minimum=1)
    p = check_probability("p", p)
    seed = check_seed("seed", seed)
    return nx.erdos_renyi_graph(n, p, seed=seed)


def ba_graph(n: int, m: int, seed: int) -> nx.Graph:
    r"""Barabasi-Albert graph as defined in the RandWire paper.

    The process starts from ``m`` isolated nodes ``0..m-1``. Node ``m`` joins all of them; every
    later node ``t`` joins ``m`` distinct nodes among ``0..t-1``, each drawn with probability
    proportional to its current degree (a node chosen twice in the same step is drawn again).
    The graph therefore has exactly :math:`m (n - m)` edges and nodes ``0..m-1`` have no
    neighbour with a lower label, so the lower-to-higher DAG has exactly ``m`` sources.

    This differs on purpose from :func:`networkx.barabasi_albert_graph`, which (since
    networkx 2.6) starts from a star with node 0 as its hub: that makes node 0 the only source
    of the DAG instead of the paper's ``m`` initial nodes. Randomness comes from
    ``random.Random(seed)``.

    Args:
        n (int): Number of nodes, > ``m``. Nodes are labelled ``0..n-1`` in order of addition.
        m (int): Edges added with every new node, ``1 <= m < n``.
        seed (int): Non-negative random seed.

    Returns:
        networkx.Graph: The undirected graph.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``m < 1``, ``n <= m`` or ``seed < 0``.
    """
    m = check_int("m", m, minimum=1)
    n = check_int("n", n, minimum=1)
    if n <= m:
        raise ValueError(f"n: expected more nodes than m = {m} (the initial nodes), got {n}")
    seed = check_seed("seed", seed)
    rng = random.Random(seed)

    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    # Each node appears here once per incident edge, so a uniform draw from this list is a
    # degree-proportional draw of a node.
    endpoints: List[int] = []
    for t in range(m, n):
        if t == m:
            # The initial nodes all have degree 0: preferential attachment is undefined, and the
            # paper's process joins the first new node to every one of them.
            targets = list(range(m))
        else:
            chosen = set()
            targets = []
            while len(targets) < m:
                v = endpoints[rng.randrange(len(endpoints))]
                if v not in chosen:
                    chosen.add(v)
                    targets.append(v)
        graph.add_edges_from((t, v) for v in targets)
        endpoints.extend(targets)
        endpoints.extend([t] * m)
    return graph


def ws_graph(n: int, k: int, p: float, seed: int) -> nx.Graph:
    r"""Watts-Strogatz small-world graph.

    A ring of ``n`` nodes, each joined to its ``k/2`` nearest neighbours on either side; every
    edge is then rewired to a random node with probability ``p``. Built with
    :func:`networkx.watts_strogatz_graph`, so the result equals networkx's for the same seed.
    Node labels follow the ring, so they give the clockwise numbering of the paper.

    Args:
        n (int): Number of nodes, >= 3.
        k (int): Even number of ring neighbours, ``2 <= k < n``. Odd ``k`` is rejected (networkx
            would silently use ``k - 1``).
        p (float): Rewiring probability in [0, 1].
        seed (int): Non-negative random seed.

    Returns:
        networkx.Graph: The undirected graph.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``k`` is odd or out of range, ``n < 3``, ``p`` is outside [0, 1] or
            ``seed < 0``.
    """
    n = check_int("n", n, minimum=3)
    k = _check_ws_k(k, n)
    p = check_probability("p", p)
    seed = check_seed("seed", seed)
    return nx.watts_strogatz_graph(n, k, p, seed=seed)


# ----------------------------------------------------------------------------- DAGs


def to_dag(graph: nx.Graph, numbering: str, seed: Optional[int] = None) -> nx.DiGraph:
    r"""Number the nodes of an undirected graph and direct every edge from lower to higher number.

    Since every edge goes up in number, the result is always acyclic; its sources are the
    nodes without a lower-numbered neighbour. Node and edge attributes are copied.

    Args:
        graph (networkx.Graph): Undirected simple graph with nodes labelled ``0..N-1`` and no
            self-loops.
        numbering (str): ``"identity"`` keeps the labels as numbers (BA: order of addition,
            WS: clockwise around the ring); ``"random"`` numbers the nodes by a random
            permutation drawn from ``seed`` (ER).
        seed (int, optional): Non-negative seed of the permutation; required for ``"random"``,
            ignored for ``"identity"``. (default: :obj:`None`)

    Returns:
        networkx.DiGraph: DAG on nodes ``0..N-1``, with graph attribute ``numbering``.

    Raises:
        TypeError: If ``graph`` is not an undirected ``networkx.Graph`` or ``seed`` is not an int.
        ValueError: If the labels are not ``0..N-1``, ``graph`` has a self-loop, ``numbering`` is
            unknown or ``seed`` is missing for ``"random"``.
    """
    if not isinstance(graph, nx.Graph) or graph.is_directed() or graph.is_multigraph():
        raise TypeError(f"graph: expected an undirected networkx.Graph, got {type(graph).__name__}")
    n = _check_labels_range("graph", graph)
    if nx.number_of_selfloops(graph):
        raise ValueError("graph: expected no self-loops (they cannot be directed low -> high), "
                         f"got {nx.number_of_selfloops(graph)}")
    if numbering not in ("random", "identity"):
        raise ValueError(f"numbering: expected 'random' or 'identity', got {numbering!r}")

    if numbering == "random":
        if seed is None:
            raise ValueError("seed: required when numbering='random' (same seed, same numbering)")
        seed = check_seed("seed", seed)
        number = list(range(n))
        random.Random(seed).shuffle(number)
    else:
        if seed is not None:
            check_seed("seed", seed)
        number = list(range(n))

    dag = nx.DiGraph()
    dag.graph.update(graph.graph)
    dag.graph["numbering"] = numbering
    # Insert nodes in number order so that iteration order matches the numbering.
    old_of = [0] * n
    for old, new in enumerate(number):
        old_of[new] = old
    for new in range(n):
        dag.add_node(new, **graph.nodes[old_of[new]])
    for u, v, data in graph.edges(data=True):
        a, b = number[u], number[v]
        if a > b:
            a, b = b, a
        dag.add_edge(a, b, **data)
    return dag


def _spec_string(kind: str, params: Dict[str, Any]) -> str:
    return f"{kind}(" + ", ".join(f"{name}={params[name]!r}" for name in GENERATOR_KINDS[kind]) + ")"


def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a str in {sorted(GENERATOR_KINDS)}, got {type(kind).__name__}")
    key = kind.strip().lower()
    if key not in GENERATOR_KINDS:
        raise ValueError(f"kind: expected one of {sorted(GENERATOR_KINDS)}, got {kind!r}")
    return key


def _derived_seed(seed: int, index: int) -> int:
    # A 63-bit child seed, valid for random.Random, numpy and torch.manual_seed alike.
    words = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def random_dag(kind: str, n: int, seed: int, **params: Any) -> nx.DiGraph:
    r"""Random DAG of one RandWire stage: generate an undirected graph, then orient it.

    Applies the paper's numbering rule for each kind: ER random order, BA order of addition,
    WS clockwise around the ring. The undirected graph is drawn with ``seed`` itself (so it
    equals :func:`er_graph` / :func:`ba_graph` / :func:`ws_graph` with that seed); the ER
    numbering permutation is drawn from an independent child seed
    (``numpy.random.SeedSequence(seed, spawn_key=(0,))``) so it is not correlated with the edges.

    Args:
        kind (str): ``"er"``, ``"ba"`` or ``"ws"`` (case-insensitive).
        n (int): Number of nodes.
        seed (int): Non-negative random seed.
        **params: The generator's parameters: ``p`` for ER, ``m`` for BA, ``k`` and ``p`` for WS.

    Returns:
        networkx.DiGraph: DAG on nodes ``0..n-1`` with graph attributes ``generator`` (e.g.
        ``"ws(k=4, p=0.75)"``, accepted by :func:`parse_generator`), ``n``, ``seed`` and
        ``numbering``.

    Raises:
        TypeError: If ``kind`` is not a str, a parameter is missing or unknown, or has the wrong type.
        ValueError: If ``kind`` is unknown or a value is out of range.
    """
    kind = _check_kind(kind)
    expected = GENERATOR_KINDS[kind]
    unknown = sorted(set(params) - set(expected))
    if unknown:
        raise TypeError(f"{unknown[0]}: not a parameter of {kind!r}; allowed: {list(expected)}")
    missing = [name for name in expected if name not in params]
    if missing:
        raise TypeError(f"{missing[0]}: missing parameter of {kind!r}; required: {list(expected)}")
    seed = check_seed("seed", seed)

    if kind == "er":
        graph = er_graph(n, params["p"], seed)
        dag = to_dag(graph, "random", seed=_derived_seed(seed, 0))
    elif kind == "ba":
        graph = ba_graph(n, params["m"], seed)
        dag = to_dag(graph, "identity")
    else:
        graph = ws_graph(n, params["k"], params["p"], seed)
        dag = to_dag(graph, "identity")
    clean = {name: (int(v) if name in ("k", "m") else float(v)) for name, v in params.items()}
    dag.graph.update(generator=_spec_string(kind, clean), n=int(n), seed=seed)
    return dag


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_SPEC = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.DOTALL)
_KEYWORD = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*(.*?)\s*", re.DOTALL)


def parse_generator(spec: str) -> Tuple[str, Dict[str, Union[int, float]]]:
    r"""Parse a generator description such as ``"ws(4, 0.75)"`` into ``(kind, params)``.

    The kind is case-insensitive; arguments are positional (in the order ``er(p)``, ``ba(m)``,
    ``ws(k, p)``) or keyword (``"WS(k=4, p=0.75)"``), positional first, as in a Python call.
    ``m`` and ``k`` must be written as integers, ``p`` as a number in [0, 1]; ``k`` must be even.
    Examples: ``"er(0.2)"`` -> ``("er", {"p": 0.2})``, ``"ba(5)"`` -> ``("ba", {"m": 5})``,
    ``"WS(k=4, p=0.75)"`` -> ``("ws", {"k": 4, "p": 0.75})``.

    Args:
        spec (str): The description.

    Returns:
        tuple: ``kind`` (str, lower case) and ``params`` (dict), ready for
        ``random_dag(kind, n, seed, **params)``.

    Raises:
        TypeError: If ``spec`` is not a str.
        ValueError: If ``spec`` is malformed, names an unknown kind or parameter, repeats or
            misses a parameter, or gives a value of the wrong type or range.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec: expected a str such as 'ws(4, 0.75)', got {type(spec).__name__}")
    match = _SPEC.fullmatch(spec)
    if match is None:
        raise ValueError(f"spec: expected 'kind(arguments)' such as 'ws(4, 0.75)', 'er(0.2)' or "
                         f"'ba(5)', got {spec!r}")
    kind = match.group(1).lower()
    if kind not in GENERATOR_KINDS:
        raise ValueError(f"spec: unknown generator {match.group(1)!r} in {spec!r}; "
                         f"allowed: {sorted(GENERATOR_KINDS)}")
    names = GENERATOR_KINDS[kind]
    body = match.group(2).strip()
    args = [a.strip() for a in body.split(",")] if body else []
    if args and args[-1] == "" and len(args) > 1:
        args.pop()  # allow one trailing comma, as Python does

    raw: Dict[str, str] = {}
    seen_keyword = False
    for position, arg in enumerate(args):
        keyword = _KEYWORD.fullmatch(arg)
        if keyword is not None:
            seen_keyword = True
            name, text = keyword.group(1).lower(), keyword.group(2)
            if name not in names:
                raise ValueError(f"spec: {kind} has no parameter {keyword.group(1)!r} in {spec!r}; "
                                 f"allowed: {list(names)}")
        else:
            if seen_keyword:
                raise ValueError(f"spec: positional argument {arg!r} after a keyword argument "
                                 f"in {spec!r}")
            if position >= len(names):
                raise ValueError(f"spec: {kind} takes {len(names)} argument(s) {list(names)}, got "
                                 f"{len(args)} in {spec!r}")
            name, text = names[position], arg
        if name in raw:
            raise ValueError(f"spec: parameter {name!r} given twice in {spec!r}")
        raw[name] = text
    missing = [name for name in names if name not in raw]
    if missing:
        raise ValueError(f"spec: missing parameter {missing[0]!r} of {kind}({', '.join(names)}) "
                         f"in {spec!r}")

    params: Dict[str, Union[int, float]] = {}
    for name in names:
        text = raw[name]
        if name in ("k", "m"):
            if not _INT.fullmatch(text):
                raise ValueError(f"{name}: expected an integer in {spec!r}, got {text!r}")
            value = int(text)
            if name == "m":
                value = check_int("m", value, minimum=1)
            else:
                value = _check_ws_k(value)
        else:
            if not _NUMBER.fullmatch(text):
                raise ValueError(f"{name}: expected a number in [0, 1] in {spec!r}, got {text!r}")
            value = check_probability(name, float(text))
        params[name] = value
    return kind, params


def add_io_nodes(dag: nx.DiGraph) -> Tuple[nx.DiGraph, int, int]:
    r"""Add the stage's input and output nodes around a DAG.

    The input node feeds every node without predecessors; the output node is fed by every node
    without successors and averages them (unweighted). An isolated node is both, so it gets an
    edge from the input and one to the output. Neither new node computes anything; they are
    labelled ``max_label + 1`` (input) and ``max_label + 2`` (output).

    Every node gets the attribute ``role``: ``"input"``, ``"output"`` or ``"hidden"``; the output
    node also gets ``aggregate="mean"``. The graph attributes ``input_node`` and ``output_node``
    name the two new nodes. The given DAG is not modified; its attributes are copied.

    Args:
        dag (networkx.DiGraph): Non-empty DAG with int node labels.

    Returns:
        tuple: ``(graph, input_node, output_node)``.

    Raises:
        TypeError: If ``dag`` is not a ``networkx.DiGraph`` or has a non-int label.
        ValueError: If ``dag`` is empty, has a cycle or already has a node with role
            ``"input"`` or ``"output"``.
    """
    _check_digraph("dag", dag)
    if dag.number_of_nodes() == 0:
        raise ValueError("dag: expected at least one node, got an empty graph")
    for v, role in dag.nodes(data="role"):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"dag: expected int node labels, got {type(v).__name__} {v!r}")
        if role in ("input", "output"):
            raise ValueError(f"dag: already has an {role} node ({v!r}); add_io_nodes expects the "
                             "hidden nodes only")
    top = max(int(v) for v in dag.nodes)
    input_node, output_node = top + 1, top + 2

    graph = nx.DiGraph()
    graph.graph.update(dag.graph)
    graph.graph.update(input_node=input_node, output_node=output_node)
    graph.add_node(input_node, role="input")
    for v, data in dag.nodes(data=True):
        graph.add_node(v, **{**data, "role": "hidden"})
    graph.add_node(output_node, role="output", aggregate="mean")
    graph.add_edges_from(dag.edges(data=True))
    graph.add_edges_from((input_node, v) for v in dag.nodes if dag.in_degree(v) == 0)
    graph.add_edges_from((v, output_node) for v in dag.nodes if dag.out_degree(v) == 0)
    return graph, input_node, output_node


def stage_seeds(seed: int, num_stages: int) -> List[int]:
    r"""One distinct, deterministic seed per stage, derived from a base seed.

    Stage ``i`` gets a 63-bit seed from ``numpy.random.SeedSequence(seed, spawn_key=(i,))``,
    i.e. the ``i``-th child of ``SeedSequence(seed).spawn``. Children are statistically
    independent, so stages never share a graph by construction (as ``seed + i`` would between
    stage 1 of seed ``s`` and stage 0 of seed ``s + 1``). In the astronomically unlikely case of
    two equal seeds, the later stage moves on to the next unused child, so the seeds of one
    network are always distinct. The first ``j`` seeds do not depend on ``num_stages``.

    Args:
        seed (int): Non-negative base seed.
        num_stages (int): Number of stages, >= 0.

    Returns:
        list[int]: ``num_stages`` distinct non-negative ints below :math:`2^{63}`.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If ``seed < 0`` or ``num_stages < 0``.
    """
    seed = check_seed("seed", seed)
    num_stages = check_int("num_stages", num_stages, minimum=0)
    seeds: List[int] = []
    used = set()
    child = 0
    while len(seeds) < num_stages:
        value = _derived_seed(seed, child)
        child += 1
        if value not in used:
            used.add(value)
            seeds.append(value)
    return seeds


# ----------------------------------------------------------------------------- files


def _check_path(path: Any) -> Tuple[str, str]:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path: expected a text path, got {type(path).__name__}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIXES:
        raise ValueError(f"path: unknown graph file suffix {suffix or '(none)'!r} in {path!r}; "
                         f"allowed: {list(_SUFFIXES)}")
    return path, suffix


def _node_link_kwargs(function: Any) -> Dict[str, str]:
    # networkx >= 3.4 takes edges=..., and 3.6 warns unless it is given; older versions call
    # the same key link=....
    import inspect

    params = inspect.signature(function).parameters
    return {"edges": "edges"} if "edges" in params else {"link": "edges"}


def save_graph(dag: nx.DiGraph, path: Union[str, os.PathLike]) -> None:
    r"""Save a directed graph, with its graph, node and edge attributes, to a file.

    The format follows the suffix: ``.json`` is networkx node-link JSON (edges under the key
    ``"edges"``), ``.graphml`` is GraphML. The file is written to a temporary file in the same
    folder and then moved into place with :func:`os.replace`, so a reader never sees a partial
    file. Nothing is pickled. GraphML keeps only str / int / float / bool attribute values.

    Args:
        dag (networkx.DiGraph): The graph (need not be acyclic).
        path (str or os.PathLike): Destination ending in ``.json`` or ``.graphml``.

    Raises:
        TypeError: If ``dag`` is not a ``networkx.DiGraph``, ``path`` is not a path, or an
            attribute value cannot be stored in the format.
        ValueError: If the suffix is unknown.
    """
    _check_digraph("dag", dag, acyclic=False)
    path, suffix = _check_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            if suffix == ".json":
                data = nx.node_link_data(dag, **_node_link_kwargs(nx.node_link_data))
                try:
                    text = json.dumps(data, indent=1)
                except TypeError as error:
                    raise TypeError(f"dag: an attribute value cannot be stored as JSON ({error})") from None
                fh.write(text.encode("utf-8"))
            else:
                try:
                    nx.write_graphml(dag, fh)
                except nx.NetworkXError as error:
                    raise TypeError(f"dag: an attribute value cannot be stored as GraphML "
                                    f"({error}); allowed: str, int, float, bool") from None
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _int_label(label: str) -> Optional[int]:
    if _INT.fullmatch(label) is None:
        return None
    value = int(label)
    return value if str(value) == label else None


def _check_node_link(path: str, data: Dict[str, Any], edges_key: str) -> None:
    # networkx reads every node, edge and the graph entry with .get(), so anything but a JSON object
    # there ends in an AttributeError deep inside it instead of a message about the file.
    def shown(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."

    if "graph" in data and not isinstance(data["graph"], dict):
        raise ValueError(f"path: {path!r} is not node-link JSON: 'graph' is {shown(data['graph'])}; "
                         "expected an object of graph attributes")
    for key in ("nodes", edges_key):
        entries = data.get(key, [])
        if not isinstance(entries, list):
            raise ValueError(f"path: {path!r} is not node-link JSON: {key!r} is {shown(entries)}; expected a "
                             "list of objects")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                example = '{"id": 0}' if key == "nodes" else '{"source": 0, "target": 1}'
                raise ValueError(f"path: {path!r} is not node-link JSON: entry {i} of {key!r} is "
                                 f"{shown(entry)}, not an object; expected objects such as {example}")


def load_graph(path: Union[str, os.PathLike]) -> nx.DiGraph:
    r"""Load a directed graph saved by :func:`save_graph` (or any node-link JSON / GraphML file).

    GraphML stores node ids as text: when every id is the decimal form of an int, the ids are
    turned back into ints (so graphs with labels ``0..N-1`` round-trip exactly).

    Args:
        path (str or os.PathLike): File ending in ``.json`` or ``.graphml``.

    Returns:
        networkx.DiGraph: The graph with its attributes.

    Raises:
        TypeError: If ``path`` is not a path.
        ValueError: If the suffix is unknown, the file is not valid JSON / GraphML (e.g. node-link JSON whose
            ``"nodes"`` or ``"edges"`` entries are not objects), or it holds an undirected graph or a
            multigraph.
    """
    from xml.etree.ElementTree import ParseError

    path, suffix = _check_path(path)
    if suffix == ".json":
        try:
            with open(path, "r", encoding="utf-8") as fh:
                data = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"path: {path!r} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict) or "nodes" not in data:
            raise ValueError(f"path: {path!r} is not node-link JSON (no 'nodes' key)")
        kwargs = _node_link_kwargs(nx.node_link_graph)
        if "edges" not in data and "links" in data:
            kwargs = {key: "links" for key in kwargs}  # written by networkx's old default
        _check_node_link(path, data, next(iter(kwargs.values())))
        try:
            graph = nx.node_link_graph(data, directed=True, multigraph=False, **kwargs)
        except (KeyError, TypeError, AttributeError, nx.NetworkXError) as exc:
            raise ValueError(f"path: {path!r} is not node-link JSON ({type(exc).__name__}: {exc})") from exc
    else:
        try:
            graph = nx.read_graphml(path)
        except (ParseError, nx.NetworkXError, KeyError, ValueError) as exc:
            raise ValueError(f"path: {path!r} is not a readable GraphML file ({type(exc).__name__}: {exc})") from exc
        for key in ("node_default", "edge_default"):
            if graph.graph.get(key) == {}:
                del graph.graph[key]
        labels = {v: _int_label(v) for v in graph.nodes}
        if graph.number_of_nodes() and all(x is not None for x in labels.values()):
            graph = nx.relabel_nodes(graph, labels, copy=True)
    if not graph.is_directed() or graph.is_multigraph():
        raise ValueError(f"path: {path!r} holds an undirected graph or a multigraph; "
                         "expected a directed simple graph")
    return graph
