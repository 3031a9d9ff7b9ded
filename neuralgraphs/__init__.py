"""neuralgraphs: neural networks as graphs of channels whose wiring is learned while the weights train."""

__version__ = "0.1.0"
