"""PyG-style operators (importing this package imports torch_geometric)."""

from neuralgraphs.nn.dnw_conv import DNWConv

__all__ = ["DNWConv"]
