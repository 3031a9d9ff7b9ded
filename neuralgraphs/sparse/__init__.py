"""Sparse networks: DNW's straight-through top-k on the convolution and linear layers of any model.

:func:`sparsify` converts a model, :func:`density_report` says what it keeps, and the layers
(:class:`SparseConv2d`, :class:`SparseLinear`) run on the library's wirings, so the baselines,
:func:`~neuralgraphs.wiring.freeze_wiring` and :class:`~neuralgraphs.analysis.history.WiringHistory` work on
them as on graph modules.
"""

from neuralgraphs.sparse.budgets import BUDGETS, GlobalSelection, GlobalTopKWiring, erk_counts, global_count
from neuralgraphs.sparse.layers import SparseConv2d, SparseLayer, SparseLinear, layer_graph
from neuralgraphs.sparse.sparsify import (SPARSE_WIRINGS, DensityReport, density_report, sparsifiable_layers,
                                          sparsify)

__all__ = ["sparsify", "density_report", "DensityReport", "sparsifiable_layers", "SparseConv2d", "SparseLinear",
           "SparseLayer", "layer_graph", "BUDGETS", "SPARSE_WIRINGS", "erk_counts", "global_count",
           "GlobalSelection", "GlobalTopKWiring"]
from neuralgraphs.sparse.compact import FORMS, CompactConv2d, CompactGraph, CompactLinear, compact  # noqa: E402

from neuralgraphs.sparse.channels import drop_dead_channels  # noqa: E402

__all__ += ["compact", "CompactConv2d", "CompactLinear", "CompactGraph", "FORMS", "drop_dead_channels"]
