"""Ready-made models on the graph modules: the DNW tiny classifiers, small digits classifiers, RandWire and DNW
stages (graph modules of C-channel nodes) and the networks built from them, and ResNet-50 v1.5 (dense, and
sparse as in the DNW paper), MobileNetV1 as a chain of graphs and the dense MobileNetV1."""

from neuralgraphs.models.randwire import DIGITS_KINDS, DigitsRandWire, RandWireNet, digits_network
from neuralgraphs.models.stages import DNWStage, RandWireStage, dnw_candidates, stage_edge_count
from neuralgraphs.models.tiny import KINDS, DigitsGraphClassifier, TinyClassifier, center_mean, edge_budget
from neuralgraphs.models.mobilenet import (MOBILENET_GRAPHS, MOBILENET_IMAGENET_RECIPE, MOBILENET_WIRINGS,
                                           MobileNetGraph, MobileNetV1, MobileNetV1Graphs, graph_edge_budget,
                                           mobilenet_v1)
from neuralgraphs.models.resnet import RESNET50_SPARSE, Bottleneck, ResNet, resnet50, sparse_resnet50

__all__ = ["TinyClassifier", "DigitsGraphClassifier", "center_mean", "edge_budget", "KINDS",
           "RandWireStage", "DNWStage", "dnw_candidates", "stage_edge_count", "RandWireNet", "DigitsRandWire",
           "digits_network", "DIGITS_KINDS", "ResNet", "Bottleneck", "resnet50", "sparse_resnet50", "RESNET50_SPARSE",
           "MobileNetV1Graphs", "MobileNetGraph", "MobileNetV1", "mobilenet_v1", "graph_edge_budget",
           "MOBILENET_GRAPHS",
           "MOBILENET_WIRINGS", "MOBILENET_IMAGENET_RECIPE"]
