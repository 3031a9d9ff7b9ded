"""Analysis of trained neural graphs: effective edges, live nodes, parameter and FLOP counts, the wiring over
training (:class:`WiringHistory`) and its page (:func:`write_wiring_page`)."""

from neuralgraphs.analysis.counts import count_flops, count_parameters, effective_edges, live_nodes
from neuralgraphs.analysis.history import WiringHistory
from neuralgraphs.analysis.page import wiring_page_data, write_wiring_page
from neuralgraphs.analysis.stats import dag_statistics

__all__ = ["effective_edges", "live_nodes", "count_parameters", "count_flops", "dag_statistics", "WiringHistory",
           "wiring_page_data", "write_wiring_page"]
