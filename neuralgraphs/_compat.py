"""Narrow shims around third-party behaviour: import-time noise, and torch.compile boundaries."""

import functools
import warnings
from typing import Callable, Dict, TypeVar

import torch

_F = TypeVar("_F", bound=Callable)
_DISABLED: Dict[Callable, Callable] = {}
# torch.compiler.is_compiling arrived in torch 2.3; torch._utils.is_compiling is its older name (dynamo
# answers both with True while it traces)
_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", None) or torch._utils.is_compiling


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


def eager_in_compile(fn: _F) -> _F:
    """Run ``fn`` eagerly inside ``torch.compile`` (a clean graph break), as ``torch.compiler.disable`` does.

    ``torch.compiler.disable`` imports ``torch._dynamo`` when it decorates, which added 1.4 s to importing
    neuralgraphs.  This wrapper asks ``torch.compiler.is_compiling()`` (a flag) on each call and builds the
    disabled function only when dynamo traces it, so eager programs never import dynamo.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if _is_compiling():
            return _compile_disabled(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _compile_disabled(fn: Callable) -> Callable:
    disabled = _DISABLED.get(fn)
    if disabled is None:
        disabled = _DISABLED[fn] = torch.compiler.disable(fn)
    return disabled
