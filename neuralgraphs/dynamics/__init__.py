"""Static, discrete-time and continuous-time neural graphs on the one message-passing core."""

from neuralgraphs.dynamics.base import WiredGraph
from neuralgraphs.dynamics.continuous import ContinuousTimeGraph
from neuralgraphs.dynamics.discrete import DiscreteTimeGraph
from neuralgraphs.dynamics.static import StaticGraph

__all__ = ["WiredGraph", "StaticGraph", "DiscreteTimeGraph", "ContinuousTimeGraph"]
