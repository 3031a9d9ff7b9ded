"""neuralgraphs: neural networks as graphs of channels whose wiring is learned while the weights train.

The core layers are importable from the top level::

    from neuralgraphs import NeuralGraph, blocked_dag, TopKWiring, StaticGraph
    from neuralgraphs.propagate import propagate
"""

__version__ = "0.1.0"

from neuralgraphs.dynamics import ContinuousTimeGraph, DiscreteTimeGraph, StaticGraph, WiredGraph
from neuralgraphs.generators import blocked_dag, complete_dag, complete_graph
from neuralgraphs.graph import NeuralGraph
from neuralgraphs.nodes import (Activation, ChannelsLast, NodeAffine, NodeConv2d, NodeNorm, NodeSequential,
                                image_node_op, vector_node_op)
from neuralgraphs.propagate import PropagationPlan
from neuralgraphs.wiring import (ActiveEdges, CompleteWiring, FixedWiring, RandomWiring, TopKWiring, Wiring,
                                 freeze_wiring, make_wiring)

__all__ = [
    "NeuralGraph", "complete_dag", "blocked_dag", "complete_graph",
    "Wiring", "TopKWiring", "RandomWiring", "CompleteWiring", "FixedWiring", "ActiveEdges", "make_wiring",
    "freeze_wiring", "PropagationPlan",
    "NodeConv2d", "NodeNorm", "NodeAffine", "Activation", "NodeSequential", "ChannelsLast", "image_node_op",
    "vector_node_op",
    "WiredGraph", "StaticGraph", "DiscreteTimeGraph", "ContinuousTimeGraph",
]
