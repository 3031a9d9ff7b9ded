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


def silence_sparse_beta_notices() -> None:
    """Silence torch's "Sparse CSR tensor support is in beta state" notice for neuralgraphs' own sparse
    tensors.

    torch prints it the first time a process builds a sparse CSR tensor.  The CSR products of
    :mod:`neuralgraphs.propagate` are an internal detail the user did not ask for, so the notice is
    ignored when it is raised from a neuralgraphs module; sparse tensors built in user code still show it.
    """
    warnings.filterwarnings("ignore", message=r"Sparse (CSR|CSC|BSR) tensor support is in beta state",
                            category=UserWarning, module=r"neuralgraphs(\.|$)")
