"""Wirings: which candidate edges are active at each step (DNW top-k and the paper's baselines)."""

from neuralgraphs.wiring.select import SegmentLayout, topk_indices
from neuralgraphs.wiring.wiring import (
    SCOPES,
    ActiveEdges,
    CompleteWiring,
    FixedWiring,
    RandomWiring,
    TopKWiring,
    Wiring,
    resolve_budget,
    straight_through_mask,
)

__all__ = ["ActiveEdges", "Wiring", "TopKWiring", "RandomWiring", "CompleteWiring", "FixedWiring",
           "resolve_budget", "straight_through_mask", "topk_indices", "SegmentLayout", "SCOPES"]
from neuralgraphs.wiring.factory import WIRINGS, freeze_wiring, make_wiring  # noqa: E402

__all__ += ["make_wiring", "freeze_wiring", "WIRINGS"]
