"""Analysis of trained neural graphs: effective edges, live nodes, parameter and FLOP counts."""

from neuralgraphs.analysis.counts import count_flops, count_parameters, effective_edges, live_nodes
from neuralgraphs.analysis.stats import dag_statistics

__all__ = ["effective_edges", "live_nodes", "count_parameters", "count_flops", "dag_statistics"]
