"""The candidate graph of a neural wiring.

A :class:`NeuralGraph` is the set of edges a wiring may use: ``num_nodes`` channels, the candidate edges as
``edge_index`` (``[2, E]`` int64, row 0 source, row 1 target), the input and output nodes, and optionally a
node ``order`` (an edge is allowed only from lower to strictly higher order) and ``blocks`` (a label per
node, used by per-block budgets).  The learned part -- which candidates are active and their weights -- lives
in the wiring and the dynamics modules; the graph is immutable structure shared by them.

Candidate edges are stored sorted by ``(target, source)``: that is CSR order of the ``[target, source]``
adjacency, so a selection that keeps candidate indices in ascending order yields edges ready for a
sparse-dense product without any re-sorting.  Weight vectors of the dynamics modules are indexed in this
order; :attr:`NeuralGraph.edge_index` is the authority.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, Dict, List, Optional, Sequence, Union

import networkx as nx
import numpy as np
import torch
from torch import Tensor

IndexLike = Union[Tensor, Sequence[int], np.ndarray]


def _as_index_tensor(value: Any, name: str, num_nodes: int) -> Tensor:
    """Convert a list / array / tensor of node ids to a 1-D int64 tensor, validating the range."""
    if isinstance(value, Tensor):
        t = value.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name}: expected a sequence of node indices, got {type(value).__name__}") from exc
    if t.dtype == torch.bool:
        if t.dim() != 1 or t.numel() != num_nodes:
            raise ValueError(f"{name}: a boolean mask must have shape [{num_nodes}], got {list(t.shape)}")
        return t.nonzero().view(-1)
    if t.numel() == 0:  # np.asarray([]) is float64: an empty list is a valid (empty) set of nodes
        return torch.empty(0, dtype=torch.long)
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name}: expected integer node indices, got dtype {t.dtype}")
    t = t.to(torch.long).reshape(-1)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_nodes):
        bad = int(t[(t < 0) | (t >= num_nodes)][0])
        raise ValueError(f"{name}: node index {bad} is out of range; allowed are 0..{num_nodes - 1}")
    if t.unique().numel() != t.numel():
        raise ValueError(f"{name}: contains repeated node indices")
    return t


def _validate_edge_index(edge_index: Any, num_nodes: int) -> Tensor:
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index: expected a torch.Tensor of shape [2, E], got {type(edge_index).__name__}")
    if edge_index.dtype != torch.long:
        raise TypeError(f"edge_index: expected dtype torch.int64, got {edge_index.dtype}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index: expected shape [2, E], got {list(edge_index.shape)}")
    ei = edge_index.detach().cpu()
    if ei.numel() == 0:  # nodes without candidate edges (a RandWire stage of isolated nodes)
        return ei.contiguous()
    lo, hi = int(ei.min()), int(ei.max())
    if lo < 0 or hi >= num_nodes:
        bad_col = int(((ei < 0) | (ei >= num_nodes)).any(0).nonzero()[0])
        s, t = ei[:, bad_col].tolist()
        raise ValueError(
            f"edge_index: edge {bad_col} ({s} -> {t}) has a node index out of range; "
            f"allowed are 0..{num_nodes - 1}")
    return ei.contiguous()


class NeuralGraph:
    r"""A candidate graph: nodes are channels, each candidate edge may carry one scalar weight.

    Args:
        num_nodes: number of nodes :math:`N`.
        edge_index: candidate edges, ``[2, E]`` int64, row 0 source, row 1 target.  Stored sorted by
            ``(target, source)``; duplicates are rejected.
        inputs: nodes that receive the external input (indices or a boolean mask).  (default: nodes with
            no incoming candidate edge)
        outputs: nodes that are read out.  (default: nodes with no outgoing candidate edge)
        order: an integer rank per node; when given, every edge must go from a lower to a strictly higher
            rank, which makes the graph acyclic by construction.  (default: :obj:`None`)
        blocks: an integer label per node (e.g. the DNW blocks ``[32, 192, 192, 192, 192]``), used by
            per-block budgets.  (default: :obj:`None`)
        acyclic: if :obj:`True`, raise when the graph has a cycle or a self-loop (naming one cycle).
            Acyclicity is always available as :attr:`is_dag`.  (default: :obj:`False`)
        node_attrs: optional per-node attributes, ``{name: list of length N}``.
        edge_attrs: optional per-edge attributes, ``{name: list of length E}`` in the order of the
            ``edge_index`` passed in (they are permuted with the edges).
        node_labels: optional original node labels (kept for the networkx round trip).
        graph_attrs: optional graph-level attributes (kept for the networkx round trip).

    Raises:
        TypeError, ValueError: on malformed or inconsistent input, with a message naming the argument.
    """

    def __init__(
        self,
        num_nodes: int,
        edge_index: Tensor,
        inputs: Optional[IndexLike] = None,
        outputs: Optional[IndexLike] = None,
        *,
        order: Optional[IndexLike] = None,
        blocks: Optional[IndexLike] = None,
        acyclic: bool = False,
        node_attrs: Optional[Dict[str, List[Any]]] = None,
        edge_attrs: Optional[Dict[str, List[Any]]] = None,
        node_labels: Optional[List[Hashable]] = None,
        graph_attrs: Optional[Dict[str, Any]] = None,
    ) -> None:
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
            raise TypeError(f"num_nodes: expected an int, got {type(num_nodes).__name__}")
        num_nodes = int(num_nodes)
        if num_nodes <= 0:
            raise ValueError(f"num_nodes: expected a positive number of nodes, got {num_nodes}")
        if not isinstance(acyclic, bool):
            raise TypeError(f"acyclic: expected a bool, got {type(acyclic).__name__}")
        self.num_nodes = num_nodes
        ei = _validate_edge_index(edge_index, num_nodes)

        key = ei[1] * num_nodes + ei[0]
        key_sorted, perm = torch.sort(key, stable=True)
        dup = (key_sorted[1:] == key_sorted[:-1]).nonzero()
        if dup.numel():
            first = int(dup[0])
            k = int(key_sorted[first])
            # the sort is stable, so perm names the two columns in input order
            a, b = int(perm[first]), int(perm[first + 1])
            raise ValueError(f"edge_index: duplicate edge {k % num_nodes} -> {k // num_nodes} (columns {a} and "
                             f"{b}); edges must be distinct")
        self.edge_index = ei[:, perm].contiguous()
        self._perm_from_input = perm

        self.order = None if order is None else self._per_node_tensor(order, "order")
        self.blocks = None if blocks is None else self._per_node_tensor(blocks, "blocks")
        src, dst = self.edge_index
        if self.order is not None:
            bad = (self.order[src] >= self.order[dst]).nonzero()
            if bad.numel():
                e = int(bad[0])
                s, t = int(src[e]), int(dst[e])
                raise ValueError(
                    f"edge_index: edge {s} -> {t} goes against the node order "
                    f"(order[{s}] = {int(self.order[s])}, order[{t}] = {int(self.order[t])}); "
                    "with an order every edge must go to a strictly higher rank")

        self.node_attrs = self._check_attrs(node_attrs, "node_attrs", num_nodes, None)
        self.edge_attrs = self._check_attrs(edge_attrs, "edge_attrs", self.num_edges, perm)
        if node_labels is not None:
            node_labels = list(node_labels)
            if len(node_labels) != num_nodes:
                raise ValueError(f"node_labels: expected {num_nodes} labels, got {len(node_labels)}")
            seen = set()
            for label in node_labels:
                if not isinstance(label, Hashable):
                    raise TypeError(f"node_labels: expected hashable labels (networkx node names), got "
                                    f"{type(label).__name__}")
                if label in seen:
                    raise ValueError(f"node_labels: label {label!r} is repeated; labels must be distinct")
                seen.add(label)
        self.node_labels = node_labels
        self.graph_attrs = dict(graph_attrs or {})

        indeg = torch.bincount(dst, minlength=num_nodes)
        outdeg = torch.bincount(src, minlength=num_nodes)
        self.inputs = (indeg == 0).nonzero().view(-1) if inputs is None else _as_index_tensor(
            inputs, "inputs", num_nodes)
        self.outputs = (outdeg == 0).nonzero().view(-1) if outputs is None else _as_index_tensor(
            outputs, "outputs", num_nodes)

        self._levels: Optional[Tensor] = None
        self._is_dag: Optional[bool] = True if self.order is not None else None
        self._ptr: Optional[Tensor] = None
        if acyclic:
            self.check_acyclic()

    # ------------------------------------------------------------------ helpers
    def _per_node_tensor(self, value: IndexLike, name: str) -> Tensor:
        if isinstance(value, Tensor):
            t = value.detach().cpu()
        else:
            arr = np.asarray(value)
            if arr.dtype == object or arr.dtype.kind in "USV":
                raise TypeError(f"{name}: expected integers, one per node, got {arr.dtype.name} values")
            t = torch.as_tensor(arr)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name}: expected integers, one per node, got dtype {t.dtype}")
        t = t.to(torch.long).reshape(-1)
        if t.numel() != self.num_nodes:
            raise ValueError(f"{name}: expected one value per node ({self.num_nodes}), got {t.numel()}")
        return t

    @staticmethod
    def _check_attrs(attrs, name, n, perm) -> Dict[str, List[Any]]:
        if attrs is None:
            return {}
        if not isinstance(attrs, dict):
            raise TypeError(f"{name}: expected a dict of lists, got {type(attrs).__name__}")
        out = {}
        for key, values in attrs.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
                raise TypeError(f"{name}[{key!r}]: expected a list of {n} values, got {type(values).__name__}")
            values = list(values)
            if len(values) != n:
                raise ValueError(f"{name}[{key!r}]: expected {n} values, got {len(values)}")
            out[key] = values if perm is None else [values[i] for i in perm.tolist()]
        return out

    # ------------------------------------------------------------------ properties
    @property
    def num_edges(self) -> int:
        """Number of candidate edges ``E``."""
        return self.edge_index.size(1)

    @property
    def ptr(self) -> Tensor:
        """CSR row pointers over targets: candidates into node ``v`` are ``ptr[v]:ptr[v + 1]``."""
        if self._ptr is None:
            counts = torch.bincount(self.edge_index[1], minlength=self.num_nodes)
            self._ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return self._ptr

    @property
    def is_dag(self) -> bool:
        """Whether the candidate graph has no cycle (self-loops count as cycles)."""
        if self._is_dag is None:
            self._is_dag = self._compute_levels() is not None
        return self._is_dag

    def in_degree(self) -> Tensor:
        """Number of candidate edges into each node."""
        return self.ptr[1:] - self.ptr[:-1]

    def out_degree(self) -> Tensor:
        """Number of candidate edges out of each node."""
        return torch.bincount(self.edge_index[0], minlength=self.num_nodes)

    # ------------------------------------------------------------------ acyclicity and levels
    def _compute_levels(self) -> Optional[Tensor]:
        """Longest-path level of every node by Kahn's algorithm, vectorised per level (None if cyclic)."""
        n = self.num_nodes
        src = self.edge_index[0].numpy()
        dst = self.edge_index[1].numpy()
        by_src = np.argsort(src, kind="stable")
        out_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
        out_dst = dst[by_src]
        indeg = np.bincount(dst, minlength=n).astype(np.int64)
        level = np.zeros(n, dtype=np.int64)
        frontier = np.flatnonzero(indeg == 0)
        seen = 0
        depth = 0
        while frontier.size:
            seen += frontier.size
            level[frontier] = depth
            starts, ends = out_ptr[frontier], out_ptr[frontier + 1]
            lens = ends - starts
            if lens.sum() == 0:
                break
            # concatenated ranges [starts[i], ends[i]) without a Python loop over nodes
            offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
            children = out_dst[offs + np.arange(lens.sum())]
            dec = np.bincount(children, minlength=n)
            indeg -= dec
            touched = np.flatnonzero(dec)
            frontier = touched[indeg[touched] == 0]
            depth += 1
        if seen != n:
            return None
        return torch.from_numpy(level)

    def find_cycle(self) -> Optional[List[int]]:
        """Return one cycle as a list of nodes ``[v0, v1, ..., v0]``, or :obj:`None` for a DAG."""
        if self.is_dag:
            return None
        g = nx.DiGraph()
        g.add_edges_from(self.edge_index.t().tolist())
        cycle = nx.find_cycle(g)
        return [u for u, _ in cycle] + [cycle[0][0]]

    def check_acyclic(self) -> None:
        """Raise :class:`ValueError` naming one cycle if the candidate graph is not a DAG."""
        if not self.is_dag:
            cycle = self.find_cycle()
            kind = "a self-loop" if len(cycle) == 2 else "a cycle"
            raise ValueError(
                f"edge_index: the graph must be acyclic but has {kind}: {' -> '.join(map(str, cycle))}")

    def levels(self) -> Tensor:
        """Topological level of each node: 0 for nodes without parents, else 1 + the parents' maximum.

        All nodes of one level can be computed together.  Cached after the first call.

        Raises:
            ValueError: if the graph has a cycle.
        """
        if self._levels is None:
            self.check_acyclic()
            self._levels = self._compute_levels()
        return self._levels

    def level_sets(self) -> List[Tensor]:
        """Nodes of each topological level, level 0 first."""
        lv = self.levels()
        order = torch.argsort(lv, stable=True)
        counts = torch.bincount(lv).tolist()
        return list(torch.split(order, counts))

    def _reachable(self, start: Tensor, reverse: bool) -> Tensor:
        """Boolean mask of nodes reachable from ``start`` along candidate edges (or against them)."""
        import scipy.sparse as sp
        from scipy.sparse.csgraph import breadth_first_order

        n = self.num_nodes
        src, dst = self.edge_index.numpy()
        if reverse:
            src, dst = dst, src
        # one virtual root (node n) linked to every start node gives a multi-source search
        rows = np.concatenate([src, np.full(start.numel(), n)])
        cols = np.concatenate([dst, start.numpy()])
        adj = sp.csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n + 1, n + 1))
        seen = breadth_first_order(adj, n, directed=True, return_predecessors=False)
        mask = torch.zeros(n + 1, dtype=torch.bool)
        mask[torch.from_numpy(seen.astype(np.int64))] = True
        return mask[:n]

    def useful_edges(self) -> Tensor:
        """Boolean mask ``[E]`` of candidate edges on some path from an input node to an output node.

        Other edges can never influence the output, so a budget spent on them is lost.
        """
        fwd = self._reachable(self.inputs, reverse=False)
        bwd = self._reachable(self.outputs, reverse=True)
        src, dst = self.edge_index
        return fwd[src] & bwd[dst]

    def prune_useless(self) -> "NeuralGraph":
        """The same graph without candidate edges that lie on no input-to-output path."""
        keep = self.useful_edges()
        if bool(keep.all()):
            return self
        if not bool(keep.any()):
            raise ValueError("graph: no candidate edge lies on a path from an input to an output node")
        idx = keep.nonzero().view(-1)
        return NeuralGraph(
            self.num_nodes, self.edge_index[:, idx], inputs=self.inputs, outputs=self.outputs,
            order=self.order, blocks=self.blocks, node_attrs=self.node_attrs,
            edge_attrs={k: [v[i] for i in idx.tolist()] for k, v in self.edge_attrs.items()},
            node_labels=self.node_labels, graph_attrs=self.graph_attrs)

    # ------------------------------------------------------------------ transforms
    def relabel(self, perm: Tensor) -> "NeuralGraph":
        """Return the same graph with node ``perm[i]`` renamed ``i``.

        Edge attributes follow their edges; node attributes, order, blocks, inputs and outputs follow nodes.
        Node labels follow nodes too; a graph without labels gets its old node ids as labels, so
        :meth:`to_networkx` still names the nodes as before the renumbering.
        """
        perm = _as_index_tensor(perm, "perm", self.num_nodes)
        if perm.numel() != self.num_nodes:
            raise ValueError(f"perm: expected a permutation of {self.num_nodes} nodes, got {perm.numel()}")
        new_of_old = torch.empty_like(perm)
        new_of_old[perm] = torch.arange(self.num_nodes)
        return NeuralGraph(
            self.num_nodes, new_of_old[self.edge_index],
            inputs=new_of_old[self.inputs], outputs=new_of_old[self.outputs],
            order=None if self.order is None else self.order[perm],
            blocks=None if self.blocks is None else self.blocks[perm],
            node_attrs={k: [v[i] for i in perm.tolist()] for k, v in self.node_attrs.items()},
            edge_attrs=self.edge_attrs,
            node_labels=(perm.tolist() if self.node_labels is None
                         else [self.node_labels[i] for i in perm.tolist()]),
            graph_attrs=self.graph_attrs)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_edge_list(cls, edges: Sequence[Sequence[int]], num_nodes: Optional[int] = None,
                       **kwargs: Any) -> "NeuralGraph":
        """Build from a list of ``(source, target)`` pairs.

        Args:
            edges: pairs of node indices.
            num_nodes: number of nodes.  (default: 1 + the largest index)
            **kwargs: forwarded to :class:`NeuralGraph`.
        """
        try:
            arr = np.asarray(edges)
        except (TypeError, ValueError) as exc:  # ragged input
            raise ValueError("edges: expected a sequence of (source, target) pairs") from exc
        if arr.size == 0:
            arr = np.zeros((0, 2), dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(f"edges: expected (source, target) pairs, got an array of shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise TypeError(f"edges: expected integer node ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if num_nodes is None:
            if arr.size == 0:
                raise ValueError("edges: empty edge list and no num_nodes given")
            num_nodes = int(arr.max()) + 1
        return cls(num_nodes, torch.from_numpy(arr.T.copy()), **kwargs)

    @classmethod
    def from_adjacency(cls, adjacency: Union[Tensor, np.ndarray], **kwargs: Any) -> "NeuralGraph":
        """Build from a dense ``[N, N]`` adjacency with ``adjacency[source, target] != 0`` for each edge.

        This is networkx's ``to_numpy_array`` convention (row = source).
        """
        a = adjacency.detach().cpu() if isinstance(adjacency, Tensor) else torch.as_tensor(np.asarray(adjacency))
        if a.dim() != 2 or a.size(0) != a.size(1):
            raise ValueError(f"adjacency: expected a square [N, N] matrix, got shape {list(a.shape)}")
        src, dst = (a != 0).nonzero(as_tuple=True)
        return cls(a.size(0), torch.stack([src, dst]), **kwargs)

    @classmethod
    def from_networkx(cls, graph: nx.DiGraph, inputs: Optional[Sequence[Hashable]] = None,
                      outputs: Optional[Sequence[Hashable]] = None, **kwargs: Any) -> "NeuralGraph":
        """Build from a networkx ``DiGraph``, keeping node, edge and graph attributes.

        Nodes are numbered ``0..N-1`` in ``graph.nodes`` order; the original labels are kept in
        :attr:`node_labels`.  ``inputs`` / ``outputs`` are given as node labels; when omitted, nodes whose
        attribute ``role`` is ``"input"`` / ``"output"`` are used if there are any, otherwise the defaults
        of :class:`NeuralGraph` apply.
        """
        if not isinstance(graph, nx.DiGraph) or isinstance(graph, nx.MultiDiGraph):
            raise TypeError(f"graph: expected a networkx.DiGraph, got {type(graph).__name__} "
                            "(an undirected graph has no edge directions; orient it first)")
        labels = list(graph.nodes)
        index = {lab: i for i, lab in enumerate(labels)}

        def to_idx(seq, name):
            if isinstance(seq, (str, bytes)) or not isinstance(seq, Iterable):
                raise TypeError(f"{name}: expected a sequence of node labels, got {type(seq).__name__}")
            try:
                return [index[v] for v in seq]
            except KeyError as exc:
                raise ValueError(f"{name}: node {exc.args[0]!r} is not in the graph") from None

        if inputs is None:
            role_in = [v for v, r in graph.nodes(data="role") if r in ("input", "input+output")]
            inputs = role_in or None
        if outputs is None:
            role_out = [v for v, r in graph.nodes(data="role") if r in ("output", "input+output")]
            outputs = role_out or None
        edges = list(graph.edges(data=True))
        ei = torch.tensor([[index[u] for u, _, _ in edges], [index[v] for _, v, _ in edges]],
                          dtype=torch.long).view(2, -1)
        node_keys = sorted({k for _, d in graph.nodes(data=True) for k in d}, key=str)
        edge_keys = sorted({k for _, _, d in edges for k in d}, key=str)
        node_attrs = {k: [d.get(k) for _, d in graph.nodes(data=True)] for k in node_keys}
        edge_attrs = {k: [d.get(k) for _, _, d in edges] for k in edge_keys}
        return cls(len(labels), ei,
                   inputs=None if inputs is None else to_idx(inputs, "inputs"),
                   outputs=None if outputs is None else to_idx(outputs, "outputs"),
                   node_attrs=node_attrs, edge_attrs=edge_attrs, node_labels=labels,
                   graph_attrs=dict(graph.graph), **kwargs)

    # ------------------------------------------------------------------ conversions
    def to_networkx(self, weight: Optional[Tensor] = None, active: Optional[Tensor] = None,
                    use_labels: bool = True, active_only: bool = False) -> nx.DiGraph:
        """Convert to a networkx ``DiGraph``.

        Args:
            weight: optional weight per candidate edge (``[E]``, in :attr:`edge_index` order), stored as
                the edge attribute ``"weight"``.
            active: optional boolean mask ``[E]`` or indices of active edges, stored as ``"active"``.
            use_labels: name nodes by their original labels when the graph came from networkx.
            active_only: keep only the active edges (every node is kept); needs ``active``.  Cheaper than
                filtering afterwards for a large candidate set with few active edges.  (default: :obj:`False`)

        Every node and edge attribute of the graph is kept (a value of :obj:`None` marks a node or edge that
        lacked the attribute and is left out).  Nodes also get ``"role"`` (``"input"``, ``"output"``,
        ``"input+output"`` or ``"hidden"``) from :attr:`inputs` and :attr:`outputs`, replacing a stored one,
        so that :meth:`from_networkx` reads the same inputs and outputs back.
        """
        e = self.num_edges
        if not isinstance(active_only, bool):
            raise TypeError(f"active_only: expected a bool, got {type(active_only).__name__}")
        if active_only and active is None:
            raise ValueError("active_only: needs the active edges (active=...)")
        if weight is not None:
            if not isinstance(weight, Tensor) or weight.numel() != e:
                raise ValueError(f"weight: expected a tensor with one value per candidate edge ({e})")
            weight = weight.detach().cpu().reshape(-1).tolist()
        if active is not None:
            if not isinstance(active, Tensor):
                raise TypeError("active: expected a boolean mask or an index tensor")
            a = active.detach().cpu()
            if a.dtype == torch.bool:
                if a.numel() != e:
                    raise ValueError(f"active: a mask must have {e} entries, got {a.numel()}")
                mask = a.reshape(-1)
            else:
                if a.is_floating_point() or a.is_complex():
                    raise TypeError(f"active: expected a boolean mask or integer edge indices, got dtype {a.dtype}")
                a = a.reshape(-1).long()
                if a.numel() and (int(a.min()) < 0 or int(a.max()) >= e):
                    raise ValueError(f"active: edge index {int(a[(a < 0) | (a >= e)][0])} is out of range; "
                                     f"allowed are 0..{e - 1}")
                mask = torch.zeros(e, dtype=torch.bool)
                mask[a] = True
            kept = mask.nonzero().view(-1).tolist() if active_only else range(e)
            active = mask.tolist()
        else:
            kept = range(e)
        names = self.node_labels if (use_labels and self.node_labels is not None) else list(range(self.num_nodes))
        g = nx.DiGraph(**self.graph_attrs)
        roles = ["hidden"] * self.num_nodes
        for i in self.inputs.tolist():
            roles[i] = "input"
        for i in self.outputs.tolist():
            roles[i] = "output" if roles[i] != "input" else "input+output"
        for i in range(self.num_nodes):
            attrs = {k: v[i] for k, v in self.node_attrs.items() if v[i] is not None}
            attrs["role"] = roles[i]
            g.add_node(names[i], **attrs)
        src, dst = self.edge_index.tolist()
        for j in kept:
            attrs = {k: v[j] for k, v in self.edge_attrs.items() if v[j] is not None}
            if weight is not None:
                attrs["weight"] = weight[j]
            if active is not None:
                attrs["active"] = active[j]
            g.add_edge(names[src[j]], names[dst[j]], **attrs)
        return g

    def to_pyg(self, weight: Optional[Tensor] = None):
        """Convert to a :class:`torch_geometric.data.Data` with ``edge_index``, ``num_nodes``,
        ``input_mask``, ``output_mask`` and, when given, ``edge_weight`` / ``order`` / ``blocks``."""
        from neuralgraphs._compat import import_pyg

        pyg = import_pyg()
        data = pyg.data.Data(edge_index=self.edge_index.clone(), num_nodes=self.num_nodes)
        data.input_mask = torch.zeros(self.num_nodes, dtype=torch.bool).index_fill_(0, self.inputs, True)
        data.output_mask = torch.zeros(self.num_nodes, dtype=torch.bool).index_fill_(0, self.outputs, True)
        if weight is not None:
            if not isinstance(weight, Tensor):
                raise TypeError(f"weight: expected a tensor with one value per candidate edge, got "
                                f"{type(weight).__name__}")
            if weight.numel() != self.num_edges:
                raise ValueError(f"weight: expected {self.num_edges} values, got {weight.numel()}")
            data.edge_weight = weight.detach().reshape(-1).clone()
        if self.order is not None:
            data.order = self.order.clone()
        if self.blocks is not None:
            data.blocks = self.blocks.clone()
        return data

    def __repr__(self) -> str:
        extra = ""
        if self.blocks is not None:
            extra += f", blocks={torch.unique(self.blocks).numel()}"
        dag = {True: "dag", False: "cyclic", None: "?"}[self._is_dag]
        return (f"NeuralGraph(num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"inputs={self.inputs.numel()}, outputs={self.outputs.numel()}{extra}, {dag})")
