"""Candidate sets for learned wirings, and random graphs for RandWire."""

from neuralgraphs.generators.candidates import blocked_dag, complete_dag, complete_graph

__all__ = ["complete_dag", "blocked_dag", "complete_graph"]
