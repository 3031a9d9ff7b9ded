"""The channel-granularity graph of ``neuralgraphs compare`` (:class:`ChannelGraphClassifier`): its wirings
against networkx's graphs, and its forward pass against a node-by-node reference."""

import networkx as nx
import pytest
import torch
from test_dynamics import dense_matrix, static_reference

from neuralgraphs.generators.candidates import complete_dag
from neuralgraphs.models.channels import ChannelGraphClassifier, channel_blocks

N, N_IN, N_OUT = 16, 2, 4


def _edges(model):
    """Active edges of the model's graph, in the original node numbers."""
    g = model.graph
    labels = torch.as_tensor(g.graph.node_labels)
    src, dst = labels[g.graph.edge_index[:, g.active().index]]
    return set(zip(src.tolist(), dst.tolist()))


@pytest.mark.parametrize("seed", [0, 3])
def test_ws_wiring_is_networkx_watts_strogatz_oriented_around_the_ring(seed):
    model = ChannelGraphClassifier("ws", num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=seed)
    ring = nx.watts_strogatz_graph(N, 2, 0.75, seed=seed)
    expected = {(min(u, v), max(u, v)) for u, v in ring.edges}
    assert _edges(model) == expected
    # the fixed wiring runs on its own edges: one level per step of the longest path of its DAG
    dag = nx.DiGraph(sorted(expected))
    dag.add_nodes_from(range(N))
    assert model.graph.num_levels == nx.dag_longest_path_length(dag) + 1 < N


@pytest.mark.parametrize("wiring", ["ws", "er", "ba", "random", "dnw", "no_update"])
def test_every_sparse_wiring_has_the_ws_graphs_edge_count_or_its_own(wiring):
    seed = 1
    ws = len(_edges(ChannelGraphClassifier("ws", num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=seed)))
    model = ChannelGraphClassifier(wiring, num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=seed)
    edges = _edges(model)
    assert all(u < v for u, v in edges)  # edges of the complete DAG over the numbering
    if wiring in ("random", "dnw", "no_update"):
        assert len(edges) == ws
    budget = ChannelGraphClassifier(wiring, num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=seed, budget=7) \
        if wiring in ("random", "dnw", "no_update") else None
    if budget is not None:
        assert len(_edges(budget)) == 7


def test_fixed_wirings_start_at_the_complete_dags_weight_scale():
    # the random baselines' edges start where DNW's candidates do: U(-1/sqrt(f), 1/sqrt(f)), f the mean
    # candidate in-degree of the complete DAG (not of the wiring's own sparse graph)
    cands = complete_dag(N, inputs=torch.arange(N_IN), outputs=torch.arange(N - N_OUT, N))
    indeg = torch.bincount(cands.edge_index[1], minlength=N)
    f = float(indeg.sum()) / int((indeg > 0).sum())
    weights = torch.cat([ChannelGraphClassifier(w, num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=s)
                         .graph.weight.detach() for w in ("ws", "random") for s in range(4)])
    assert float(weights.abs().max()) <= f ** -0.5
    assert float(weights.abs().mean()) > 0.3 * f ** -0.5


@pytest.mark.parametrize("wiring, num_blocks", [("ba", None), ("random", None), ("dnw", None), ("dnw", 3)])
def test_graph_forward_matches_a_node_by_node_reference(wiring, num_blocks):
    torch.manual_seed(0)
    model = ChannelGraphClassifier(wiring, num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=2,
                                   num_blocks=num_blocks).double()
    g = model.graph
    with torch.no_grad():
        for p in g.node_op.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the norm's affine away from 1 / 0
    labels = torch.as_tensor(g.graph.node_labels)
    mask = torch.zeros(g.weight.numel(), dtype=torch.bool)
    mask[g.active().index] = True
    a = dense_matrix(g, mask, labels)
    original = complete_dag(N, inputs=torch.arange(N_IN), outputs=torch.arange(N - N_OUT, N))
    x = torch.randn(3, N_IN, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(g(x), static_reference(g, original, a, x))


def _block_of(sizes):
    """Block number of every node, written out from the sizes."""
    return [b for b, size in enumerate(sizes) for _ in range(size)]


def test_channel_blocks_split_the_hidden_nodes_evenly():
    assert channel_blocks(32, 4, 8, 5) == [4, 4, 4, 4, 4, 4, 8]
    assert channel_blocks(32, 4, 8, 3) == [4, 7, 7, 6, 8]
    assert channel_blocks(13, 4, 8, 1) == [4, 1, 8]
    with pytest.raises(ValueError, match="num_blocks"):
        channel_blocks(32, 4, 8, 21)


@pytest.mark.parametrize("wiring", ["random", "dnw", "no_update", "complete"])
def test_blocked_candidates_only_join_a_block_to_a_later_one(wiring):
    blocks = 3
    model = ChannelGraphClassifier(wiring, num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=1, num_blocks=blocks)
    block = _block_of([N_IN, 4, 3, 3, N_OUT])  # 10 hidden nodes in 3 blocks
    edges = _edges(model)
    assert all(block[u] < block[v] for u, v in edges)
    if wiring == "complete":
        # every pair of nodes in different blocks, counted by hand: 2*14 + 4*10 + 3*7 + 3*4
        assert len(edges) == 2 * 14 + 4 * 10 + 3 * 7 + 3 * 4
    else:
        ws = len(_edges(ChannelGraphClassifier("ws", num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, seed=1)))
        assert len(edges) == ws
    # one level per block, not one per node (a fixed wiring runs on its own DAG: at most as many)
    if wiring in ("dnw", "complete"):
        assert model.graph.num_levels == blocks + 2
    else:
        assert model.graph.num_levels <= blocks + 2


def test_blocked_wirings_reject_impossible_sizes():
    with pytest.raises(ValueError, match="num_blocks"):
        ChannelGraphClassifier("dnw", num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, num_blocks=11)
    with pytest.raises(ValueError, match="budget"):  # 100 candidates in 3 blocks
        ChannelGraphClassifier("dnw", num_nodes=N, num_inputs=N_IN, num_outputs=N_OUT, num_blocks=3, budget=102)
