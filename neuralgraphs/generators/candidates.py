"""Generators of the common candidate sets: pure functions returning a :class:`NeuralGraph`."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from neuralgraphs._checks import check_int
from neuralgraphs.graph import IndexLike, NeuralGraph


def complete_dag(num_nodes: int, order: Optional[IndexLike] = None, inputs: Optional[IndexLike] = None,
                 outputs: Optional[IndexLike] = None) -> NeuralGraph:
    """Every edge allowed by a node order: ``u -> v`` whenever ``order[u] < order[v]``.

    Args:
        num_nodes: number of nodes.
        order: a rank per node; ties forbid edges in both directions.  (default: the node index)
        inputs: input nodes.  (default: the nodes of lowest rank)
        outputs: output nodes.  (default: the nodes of highest rank)
    """
    num_nodes = check_int("num_nodes", num_nodes, minimum=2)
    rank = torch.arange(num_nodes) if order is None else torch.as_tensor(order).reshape(-1)
    if rank.numel() != num_nodes:
        raise ValueError(f"order: expected {num_nodes} ranks, got {rank.numel()}")
    if rank.is_floating_point():
        raise TypeError(f"order: expected integer ranks, got dtype {rank.dtype}")
    allowed = rank.view(-1, 1) < rank.view(1, -1)  # [source, target]
    src, dst = allowed.nonzero(as_tuple=True)
    if src.numel() == 0:
        raise ValueError("order: all nodes have the same rank, so no edge is allowed")
    return NeuralGraph(num_nodes, torch.stack([src, dst]), inputs=inputs, outputs=outputs, order=rank)


def blocked_dag(block_sizes: Sequence[int], inputs: Optional[IndexLike] = None,
                outputs: Optional[IndexLike] = None) -> NeuralGraph:
    """Nodes split in consecutive blocks; block ``i`` may feed every node of every later block.

    This is the static DNW layout (``[32, 192, 192, 192, 192]`` for the tiny CIFAR-10 classifier): every
    candidate can be used by a forward pass, so a budget over these candidates is fully effective.

    Args:
        block_sizes: number of nodes in each block (at least two blocks).
        inputs: input nodes.  (default: the first block)
        outputs: output nodes.  (default: the last block)
    """
    if isinstance(block_sizes, (str, bytes)) or not hasattr(block_sizes, "__len__"):
        raise TypeError("block_sizes: expected a sequence of positive ints")
    sizes = [check_int(f"block_sizes[{i}]", s, minimum=1) for i, s in enumerate(block_sizes)]
    if len(sizes) < 2:
        raise ValueError(f"block_sizes: expected at least two blocks, got {len(sizes)}")
    n = sum(sizes)
    blocks = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    allowed = blocks.view(-1, 1) < blocks.view(1, -1)
    src, dst = allowed.nonzero(as_tuple=True)
    if inputs is None:
        inputs = torch.arange(sizes[0])
    if outputs is None:
        outputs = torch.arange(n - sizes[-1], n)
    return NeuralGraph(n, torch.stack([src, dst]), inputs=inputs, outputs=outputs, order=blocks, blocks=blocks)


def complete_graph(num_nodes: int, self_loops: bool = True, inputs: Optional[IndexLike] = None,
                   outputs: Optional[IndexLike] = None) -> NeuralGraph:
    """All ``N * N`` directed edges (without self-loops: ``N * (N - 1)``), for recurrent graphs.

    Args:
        num_nodes: number of nodes.
        self_loops: include ``v -> v``.  (default: :obj:`True`)
        inputs: input nodes.  (default: all nodes)
        outputs: output nodes.  (default: all nodes)
    """
    num_nodes = check_int("num_nodes", num_nodes, minimum=1)
    if not isinstance(self_loops, bool):
        raise TypeError(f"self_loops: expected a bool, got {type(self_loops).__name__}")
    allowed = torch.ones(num_nodes, num_nodes, dtype=torch.bool)
    if not self_loops:
        allowed.fill_diagonal_(False)
    src, dst = allowed.nonzero(as_tuple=True)
    if src.numel() == 0:
        raise ValueError("num_nodes: a single node without self-loops has no candidate edge")
    everyone = torch.arange(num_nodes)
    return NeuralGraph(num_nodes, torch.stack([src, dst]),
                       inputs=everyone if inputs is None else inputs,
                       outputs=everyone if outputs is None else outputs)
