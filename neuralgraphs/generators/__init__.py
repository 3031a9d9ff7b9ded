"""Candidate sets for learned wirings, and random graphs for RandWire."""

from neuralgraphs.generators.candidates import blocked_dag, complete_dag, complete_graph
from neuralgraphs.generators.random_graphs import (
    GENERATOR_KINDS,
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

__all__ = ["complete_dag", "blocked_dag", "complete_graph", "er_graph", "ba_graph", "ws_graph", "to_dag",
           "random_dag", "parse_generator", "add_io_nodes", "stage_seeds", "save_graph", "load_graph",
           "GENERATOR_KINDS"]
