"""Crash-safe checkpoints, safe loading, and YAML run configurations.

Checkpoints are written with ``torch.save`` to a temporary file beside the target, flushed and fsynced,
then moved over the target with ``os.replace``, so a crash mid-write leaves the previous checkpoint
intact. They are read back with ``torch.load(..., weights_only=True)``, which refuses arbitrary pickled
objects; :func:`save_checkpoint` therefore checks up front that the state holds only what such a load
accepts. YAML configurations are parsed with ``yaml.safe_load`` (PyYAML is an optional extra).
"""

from __future__ import annotations

import collections
import inspect
import os
import pickle
import re
import tempfile
import zipfile
from typing import Any, Callable, Dict, Mapping, Union

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "load_yaml_config", "apply_config"]

PathLike = Union[str, "os.PathLike[str]"]

# Exactly the types (not subclasses: a namedtuple or defaultdict pickles by class reference) that
# torch.load(weights_only=True) rebuilds without extra allow-listing.
_LEAF_TYPES = (bool, int, float, complex, str, bytes, type(None), torch.Size, torch.dtype, torch.device)
_SEQUENCE_TYPES = (list, tuple, set)
_MAPPING_TYPES = (dict, collections.OrderedDict)


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _check_storable(value: Any, where: str) -> None:
    kind = type(value)
    if isinstance(value, torch.Tensor):
        if kind not in (torch.Tensor, torch.nn.Parameter):
            raise TypeError(f"state: {where} is a {kind.__name__}; only plain tensors and Parameters "
                            "load with weights_only=True")
        return
    if kind in _LEAF_TYPES:
        return
    if kind in _SEQUENCE_TYPES:
        for i, item in enumerate(value):
            _check_storable(item, f"{where}[{i}]")
        return
    if kind in _MAPPING_TYPES:
        for key, item in value.items():
            _check_storable(key, f"key {key!r} of {where}")
            _check_storable(item, f"{where}[{key!r}]")
        return
    hint = " (convert it with torch.as_tensor)" if kind.__module__.startswith("numpy") else ""
    raise TypeError(f"state: {where} has type {kind.__module__}.{kind.__qualname__}, which "
                    f"torch.load(weights_only=True) refuses{hint}; allowed are tensors, bool, int, float, "
                    "complex, str, bytes, None, torch.Size/dtype/device and lists, tuples, sets and dicts "
                    "of those")


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically.

    The data go to a temporary file in the same folder (so the final ``os.replace`` is a same-filesystem
    rename), which is flushed and fsynced before it replaces ``path``; the folder is fsynced afterwards
    where the platform allows. If anything fails, the temporary file is removed and any previous file at
    ``path`` is left untouched.  A process killed mid-write (``kill -9``, power loss) cannot remove its
    temporary file: the next successful write to the same ``path`` removes such leftovers (one writer per
    ``path`` is assumed, as the final rename assumes anyway).

    Args:
        path (str or os.PathLike): destination file; its folder must exist.
        state (dict): tensors, numbers, strings, ``None``, ``torch.Size``/``dtype``/``device`` and lists,
            tuples, sets and dicts of those (what ``torch.load(weights_only=True)`` can read back), e.g.
            ``{"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}``.

    Raises:
        TypeError: if ``state`` is not a dict or holds a value a weights-only load would refuse.
        FileNotFoundError: if the destination folder does not exist.
    """
    path = _check_path(path)
    if not isinstance(state, dict):
        raise TypeError(f"state: expected a dict, got {type(state).__name__}")
    _check_storable(state, "state")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"path: the folder {folder!r} of {path!r} does not exist")
    fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.chmod(tmp_path, _target_mode(path))
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)
    _remove_leftovers(folder, os.path.basename(path))


def _remove_leftovers(folder: str, base: str) -> None:
    # the names mkstemp gives for this target: ".BASE." + random letters, digits and "_" + ".tmp"
    pattern = re.compile(re.escape(f".{base}.") + r"[a-z0-9_]+\.tmp")
    for name in os.listdir(folder):
        if pattern.fullmatch(name):
            try:
                os.unlink(os.path.join(folder, name))
            except FileNotFoundError:
                pass


def _target_mode(path: str) -> int:
    # mkstemp creates 0600 files; give the checkpoint the mode an ordinary open() would have (or keep the
    # mode of the file it replaces).
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open folders, hence best effort.
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    Args:
        path (str or os.PathLike): the checkpoint file.
        map_location: where tensors go, as for ``torch.load``. (default: ``"cpu"``)

    Returns:
        dict: the saved state.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is empty, truncated or corrupt, is not a checkpoint written by
            ``torch.save``, holds objects a weights-only load refuses (arbitrary pickled classes), or does
            not hold a dict; the message names the file and says which.
    """
    path = _check_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: checkpoint file {path!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except Exception as exc:  # a truncated or foreign file fails anywhere in the zip reader or unpickler
        raise ValueError(_unreadable_reason(path, exc)) from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a checkpoint holding a dict, found {type(state).__name__}")
    return state


# What torch.save writes first: a zip archive (the default since torch 1.6), or, in the legacy format, the
# pickled magic number 0x1950a86a20f9469cfc6c (a LONG1 opcode, its length 10, then the little-endian bytes).
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def _zip_state(path: str) -> str:
    """``"damaged"``, ``"foreign"`` (a sound zip without torch's ``data.pkl``) or ``"intact"``."""
    # A file cut short loses the zip's central directory, which sits at the end; testzip also catches a
    # damaged member through its CRC.
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                return "damaged"
            names = archive.namelist()
    except Exception:  # BadZipFile, OSError, EOFError, ...: anything that stops the read
        return "damaged"
    return "intact" if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) else "foreign"


def _unreadable_reason(path: str, exc: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed with ``exc``, worded for the user.

    ``torch.load`` reports a truncated archive as an ``OSError`` or ``RuntimeError`` from its zip reader, and
    foreign bytes as an ``UnpicklingError`` saying "weights only load failed", which reads as if the file
    held forbidden objects; looking at the file itself tells these cases apart. torch's own message is kept
    only where it says something (which global was refused); it stays reachable as ``__cause__``.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        head = None
    if head == b"":
        return f"{path}: the file is empty; expected a checkpoint written by torch.save"
    if head is not None and head.startswith(_ZIP_MAGIC):
        state = _zip_state(path)
        if state == "damaged":
            return (f"{path}: the checkpoint is truncated or corrupt: it starts like an archive written by "
                    "torch.save, but the archive is incomplete or damaged")
        if state == "foreign":
            return f"{path}: not a checkpoint written by torch.save: a zip archive without torch's data.pkl"
        if isinstance(exc, pickle.UnpicklingError):
            return (f"{path}: refused by torch.load(weights_only=True); the file holds objects other than "
                    f"tensors and plain containers ({exc})")
        return f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})"
    if head is not None and _LEGACY_MAGIC in head:
        if isinstance(exc, pickle.UnpicklingError):
            return (f"{path}: refused by torch.load(weights_only=True); the legacy-format checkpoint is "
                    f"truncated or holds objects other than tensors and plain containers ({exc})")
        return (f"{path}: the checkpoint is truncated or corrupt: it starts like a legacy torch.save file but "
                f"cannot be read to its end ({type(exc).__name__}: {exc})")
    return (f"{path}: not a checkpoint written by torch.save: the file starts neither like a torch.save zip "
            "archive nor like a legacy torch.save file")


def load_yaml_config(path: PathLike) -> Dict[str, Any]:
    """Parse a YAML file with ``yaml.safe_load`` and check that its top level is a mapping.

    ``safe_load`` builds only plain YAML types, so tags such as ``!!python/object`` are refused. An empty
    file gives ``{}``.

    Args:
        path (str or os.PathLike): the YAML file.

    Returns:
        dict: the parsed mapping.

    Raises:
        ImportError: if PyYAML is not installed.
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the YAML is malformed, uses unsafe tags, or its top level is not a mapping.
    """
    path = _check_path(path)
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_yaml_config needs PyYAML: pip install pyyaml") from exc
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: YAML file {path!r} does not exist")
    with open(path, "r", encoding="utf-8") as f:
        try:
            config = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not a valid plain YAML document ({exc})") from exc
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping (key: value lines) at the top level, "
                         f"found {type(config).__name__}")
    return config


def apply_config(cls_or_fn: Callable[..., Any], config: Mapping[str, Any], **overrides: Any) -> Any:
    """Call ``cls_or_fn(**config, **overrides)`` after checking the keys against its signature.

    ``overrides`` win over ``config``. Keys that are not keyword parameters of ``cls_or_fn`` (for a class,
    of its constructor) are refused unless it accepts ``**kwargs``; required parameters left out are
    reported too, before the call.

    Args:
        cls_or_fn (callable): a class or function.
        config (Mapping): parameter names to values, e.g. from :func:`load_yaml_config`.
        **overrides: values taking precedence over ``config``.

    Returns:
        The result of the call (an instance when ``cls_or_fn`` is a class).

    Raises:
        TypeError: on unknown or missing keys (the message lists the accepted names), non-string keys, or
            a non-callable ``cls_or_fn``.
    """
    if not callable(cls_or_fn):
        raise TypeError(f"cls_or_fn: expected a class or function, got {type(cls_or_fn).__name__}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a mapping of parameter names to values, got {type(config).__name__}")
    bad_keys = [k for k in config if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(f"config: keys must be parameter names (str), got {bad_keys!r}")
    kwargs = {**config, **overrides}
    name = getattr(cls_or_fn, "__qualname__", repr(cls_or_fn))
    try:
        signature = inspect.signature(cls_or_fn)
    except (TypeError, ValueError):  # some builtins have no introspectable signature
        return cls_or_fn(**kwargs)
    params = signature.parameters.values()
    accepted = [p.name for p in params
                if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if not takes_var_kw:
        unknown = sorted(k for k in kwargs if k not in accepted)
        if unknown:
            raise TypeError(f"config: unknown key(s) {unknown} for {name}; accepted parameters are {accepted}")
    missing = [p.name for p in params
               if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
               and p.default is inspect.Parameter.empty and p.name not in kwargs]
    if missing:
        raise TypeError(f"config: missing required key(s) {missing} for {name}; accepted parameters are "
                        f"{accepted}")
    return cls_or_fn(**kwargs)
