"""Narrow shims around third-party import-time noise."""

import warnings


def import_pyg():
    """Import ``torch_geometric`` without its torch-2.13 ``torch.jit.script`` deprecation warnings.

    Only that one message is silenced; every other warning still reaches the user.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
        import torch_geometric
        import torch_geometric.data  # noqa: F401
        import torch_geometric.utils  # noqa: F401
    return torch_geometric
