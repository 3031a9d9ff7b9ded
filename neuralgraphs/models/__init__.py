"""Ready-made models on the graph modules: the DNW tiny classifiers, small digits classifiers, and RandWire
networks with their DNW counterparts."""

from neuralgraphs.models.randwire import DNWStage, RandWireNet, RandWireStage, digits_network
from neuralgraphs.models.tiny import KINDS, DigitsGraphClassifier, TinyClassifier, center_mean, edge_budget

__all__ = ["TinyClassifier", "DigitsGraphClassifier", "center_mean", "edge_budget", "KINDS",
           "RandWireStage", "DNWStage", "RandWireNet", "digits_network"]
