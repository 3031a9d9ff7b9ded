"""How a learned wiring changes during training.

:class:`WiringHistory` takes snapshots of the active edge sets of every wired module of a model (any
submodule with a ``wiring`` and a ``weight``, as the neuralgraphs graph modules have) and answers how many
edges were swapped between snapshots and how much of the final wiring was already in place at each one.
It is also a :func:`~neuralgraphs.train.fit` callback.
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = ["WiringHistory", "Snapshots", "wired_modules"]


def wired_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every submodule with a ``wiring`` module and a tensor ``weight``.

    Args:
        model (torch.nn.Module): the model (itself included in the search).

    Returns:
        list: in ``model.named_modules()`` order; the model itself is named ``""``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules()
            if isinstance(getattr(m, "wiring", None), nn.Module) and isinstance(getattr(m, "weight", None), Tensor)]


def _active_index(module: nn.Module) -> Tensor:
    with torch.no_grad():
        return module.wiring(module.weight).index.detach().to("cpu", torch.int64).clone()


class Snapshots:
    """The snapshots of a :class:`WiringHistory`, stored as the first one and then the edges each one added
    and removed (int32), read back as a sequence of ``{module name: ascending int64 indices}``.

    A long run of a large model would not fit in memory as one full index set per snapshot (a ResNet-50 at
    10 % keeps 2.5M weights: 20 MB a snapshot); late in training a snapshot costs only its swaps.  The last
    snapshot is kept whole, and the last one read back is cached, so reading the snapshots in order (or
    one epoch after the one before) costs one pass over the changes in between.
    """

    def __init__(self) -> None:
        self.names: List[str] = []
        self.first: Dict[str, Tensor] = {}
        self.added: List[Dict[str, Tensor]] = []
        self.removed: List[Dict[str, Tensor]] = []
        self._last: Dict[str, Tensor] = {}
        self._cache: Tuple[int, Dict[str, Tensor]] = (-1, {})

    def __len__(self) -> int:
        return len(self.added) + 1 if self.names or self.first else 0

    def append(self, snap: Dict[str, Tensor]) -> None:
        snap = {n: t.to(torch.int64).sort().values for n, t in snap.items()}
        if not len(self):
            self.names, self.first = list(snap), {n: t.to(torch.int32) for n, t in snap.items()}
        else:
            prev = self._last
            self.added.append({n: snap[n][~torch.isin(snap[n], prev[n])].to(torch.int32) for n in self.names})
            self.removed.append({n: prev[n][~torch.isin(prev[n], snap[n])].to(torch.int32) for n in self.names})
        self._last = snap

    def _apply(self, snap: Dict[str, Tensor], i: int) -> Dict[str, Tensor]:
        """Snapshot ``i + 1`` from snapshot ``i``."""
        add, rem = self.added[i], self.removed[i]
        return {n: torch.cat([snap[n][~torch.isin(snap[n], rem[n].to(torch.int64))],
                              add[n].to(torch.int64)]).sort().values for n in self.names}

    def __iter__(self) -> Iterator[Dict[str, Tensor]]:
        if not len(self):
            return
        snap = {n: t.to(torch.int64) for n, t in self.first.items()}
        yield snap
        for i in range(len(self.added)):
            snap = self._apply(snap, i)
            yield snap

    def __getitem__(self, index: Union[int, slice]):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not -n <= index < n:
            raise IndexError(f"snapshot index {index!r} out of range for {n} snapshots")
        index = int(index) % n
        if index == n - 1:
            return self._last
        at, snap = self._cache
        if not 0 <= at <= index:
            at, snap = 0, {k: t.to(torch.int64) for k, t in self.first.items()}
        for i in range(at, index):
            snap = self._apply(snap, i)
        self._cache = (index, snap)
        return snap

    def truncate(self, count: int) -> None:
        """Keep the first ``count`` snapshots."""
        if count >= len(self):
            return
        if count <= 0:
            self.__init__()
            return
        last = self[count - 1]
        del self.added[count - 1:], self.removed[count - 1:]
        self._last, self._cache = last, (-1, {})


class WiringHistory:
    r"""Snapshots of the active edges of every wired module, and the swaps between them.

    A snapshot holds, per module, the ascending indices of its active candidate edges (``k`` int64 values,
    not an ``E``-sized mask); :attr:`records` stores them as changes (:class:`Snapshots`).  With
    :math:`A_i` the active set of snapshot :math:`i` (all modules together),

    .. math::
        \text{swaps}_i = |A_i \setminus A_{i-1}| \ (= |A_{i-1} \setminus A_i| \text{ for a fixed budget}),
        \qquad \text{overlap}_i = |A_i \cap A_{\text{last}}| \,/\, |A_{\text{last}}|.

    Used as a :func:`~neuralgraphs.train.fit` callback it records once before training (step 0), every
    ``every`` optimizer steps when ``every`` is given, and after each epoch when ``at_epoch_end`` is true.

    Args:
        every (int, optional): record every this many optimizer steps. (default: :obj:`None`, never)
        at_epoch_end (bool): record after every epoch. (default: :obj:`True`)

    Example:
        >>> hist = WiringHistory()
        >>> fit(model, train, test, epochs=3, lr=0.1, callbacks=[hist])  # doctest: +SKIP
        >>> hist.swaps()  # edges swapped in each epoch  # doctest: +SKIP
    """

    def __init__(self, every: Optional[int] = None, at_epoch_end: bool = True) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1):
            raise ValueError(f"every: expected a positive int or None, got {every!r}")
        if not isinstance(at_epoch_end, bool):
            raise TypeError(f"at_epoch_end: expected a bool, got {type(at_epoch_end).__name__}")
        self.every = None if every is None else int(every)
        self.at_epoch_end = at_epoch_end
        self.steps: List[int] = []
        self.labels: List[Any] = []
        self.records = Snapshots()
        self._step = 0

    # ------------------------------------------------------------------ recording
    def record(self, model: nn.Module, step: Optional[int] = None, label: Any = None) -> Dict[str, Tensor]:
        """Take a snapshot of the active edges of every wired module of ``model``.

        Args:
            model (torch.nn.Module): the model.
            step (int, optional): the step to file it under. (default: the last step seen by the callback)
            label: any tag kept in :attr:`labels` (e.g. ``"epoch 3"``). (default: :obj:`None`)

        Returns:
            dict: module name to its active candidate indices (ascending int64).

        Raises:
            ValueError: if ``model`` has no wired module, or its wired modules differ from earlier snapshots.
        """
        modules = wired_modules(model)
        if not modules:
            raise ValueError("model: has no wired module (a submodule with .wiring and .weight) to record")
        snap = {name: _active_index(m) for name, m in modules}
        if len(self.records) and list(snap) != self.records.names:
            raise ValueError(f"model: its wired modules {list(snap)} differ from those of the first snapshot "
                             f"{self.records.names}")
        self.records.append(snap)
        self.steps.append(self._step if step is None else int(step))
        self.labels.append(label)
        return snap

    def __len__(self) -> int:
        return len(self.records)

    # ------------------------------------------------------------------ fit callback hooks
    def on_fit_start(self, model: nn.Module, state: Dict[str, Any]) -> None:
        self._step = int(state.get("step", 0))
        if not self.steps or self.steps[-1] != self._step:
            epoch = int(state.get("epoch", 0))
            self.record(model, label="start" if epoch == 0 else f"epoch {epoch}")

    def on_step_end(self, model: nn.Module, step: int, loss: float) -> None:
        self._step = int(step)
        if self.every is not None and step % self.every == 0:
            self.record(model, label=f"step {step}")

    def on_epoch_end(self, model: nn.Module, epoch: int, record: Dict[str, Any]) -> None:
        if not self.at_epoch_end:
            return
        if self.steps and self.steps[-1] == self._step:
            self.labels[-1] = f"epoch {epoch}"  # already recorded at this step by ``every``
        else:
            self.record(model, label=f"epoch {epoch}")

    # ------------------------------------------------------------------ queries
    def _check_nonempty(self, need: int = 1) -> None:
        if len(self.records) < need:
            raise ValueError(f"history: needs at least {need} snapshot(s), has {len(self.records)}; "
                             "call record() or pass it to fit(callbacks=[...])")

    def swaps(self, per_module: bool = False) -> List[Any]:
        """Edges that entered the active set between consecutive snapshots.

        Args:
            per_module (bool): return a dict per interval instead of the total. (default: :obj:`False`)

        Returns:
            list: one entry per pair of consecutive snapshots (``len(self) - 1`` entries): an int, or a dict
            of module name to int.
        """
        self._check_nonempty(1)
        # an added index is new against the snapshot before (the store keeps exactly those)
        counts = [{name: int(t.numel()) for name, t in added.items()} for added in self.records.added]
        return counts if per_module else [sum(c.values()) for c in counts]

    def swaps_between(self, indices: List[int]) -> List[int]:
        """Edges active at each of the snapshots ``indices`` (ascending) and not at the one listed before it,
        in one pass over the stored changes (e.g. per epoch from the snapshots at the epochs' ends)."""
        indices = list(indices)
        if not indices:
            return []
        if any(b <= a for a, b in zip(indices, indices[1:])) or not 0 <= indices[0] <= indices[-1] < len(self):
            raise ValueError(f"indices: expected ascending snapshot indices in [0, {len(self)}), got {indices}")
        wanted, out, before = set(indices), [], None
        for i, snap in enumerate(self.records):
            if i in wanted:
                if before is not None:
                    out.append(sum(_count_new(before[n], snap[n]) for n in snap))
                before = snap
            if i >= indices[-1]:
                break
        return out

    def removed(self) -> List[int]:
        """Edges that left the active set between consecutive snapshots (equal to :meth:`swaps` at a fixed
        budget)."""
        self._check_nonempty(1)
        return [sum(int(t.numel()) for t in removed.values()) for removed in self.records.removed]

    def num_active(self, per_module: bool = False) -> List[Any]:
        """Active edges in each snapshot: all modules together, or a dict of module name to count."""
        r = self.records
        if not len(r):
            return []
        counts = [{n: int(t.numel()) for n, t in r.first.items()}]
        for added, removed in zip(r.added, r.removed):
            counts.append({n: counts[-1][n] + int(added[n].numel()) - int(removed[n].numel()) for n in r.names})
        return counts if per_module else [sum(c.values()) for c in counts]

    def final_overlap(self) -> List[float]:
        """Fraction of the last snapshot's active edges already active in each snapshot (1.0 at the end)."""
        self._check_nonempty(1)
        last = self.records[-1]
        total = sum(int(t.numel()) for t in last.values())
        if total == 0:
            return [1.0] * len(self.records)
        return [sum(_count_common(snap[n], last[n]) for n in last) / total for snap in self.records]

    def summary(self) -> List[Dict[str, Any]]:
        """One row per snapshot: ``step``, ``label``, ``active``, ``swaps`` (since the previous snapshot, 0
        for the first) and ``final_overlap``."""
        self._check_nonempty(1)
        swaps = [0] + self.swaps()
        return [{"step": s, "label": lab, "active": a, "swaps": w, "final_overlap": o}
                for s, lab, a, w, o in zip(self.steps, self.labels, self.num_active(), swaps, self.final_overlap())]

    def state_dict(self) -> Dict[str, Any]:
        """Everything recorded, as tensors, ints and lists (storable with ``torch.save``): the first snapshot
        and then the edges each one added and removed (int32), as :attr:`records` holds them, so a run of
        thousands of snapshots of 32,000 active edges each takes the first snapshot plus twice the swaps,
        not ``k`` indices per snapshot.  :meth:`load_state_dict` rebuilds the snapshots exactly."""
        r = self.records
        return {"steps": list(self.steps), "labels": [None if lab is None else str(lab) for lab in self.labels],
                "modules": list(r.names), "first": dict(r.first), "added": [dict(d) for d in r.added],
                "removed": [dict(d) for d in r.removed]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (or a dict with the full ``"records"``, one dict of
        ascending indices per snapshot, as written before the snapshots were stored as changes)."""
        steps = [int(s) for s in state["steps"]]
        records = Snapshots()
        if "records" in state:
            for r in state["records"]:
                records.append(r)
        elif steps:
            if len(state["added"]) != len(steps) - 1 or len(state["removed"]) != len(state["added"]):
                raise ValueError(f"state: expected {len(steps) - 1} changes for {len(steps)} snapshots, got "
                                 f"{len(state['added'])} added and {len(state['removed'])} removed")
            records.names = list(state["modules"])
            records.first = {n: state["first"][n].to(torch.int32) for n in records.names}
            records.added = [{n: d[n].to(torch.int32) for n in records.names} for d in state["added"]]
            records.removed = [{n: d[n].to(torch.int32) for n in records.names} for d in state["removed"]]
            *_, records._last = iter(records)
        if len(records) != len(steps) or len(state["labels"]) != len(steps):
            raise ValueError(f"state: {len(steps)} steps, {len(state['labels'])} labels and {len(records)} snapshots; "
                             "expected one of each per snapshot")
        self.steps = steps
        self.labels = list(state["labels"])
        self.records = records
        self._step = self.steps[-1] if self.steps else 0

    def truncate(self, count: int) -> None:
        """Keep the first ``count`` snapshots (a resumed run drops those taken after its checkpoint)."""
        del self.steps[count:], self.labels[count:]
        self.records.truncate(count)

    def __repr__(self) -> str:
        return f"WiringHistory(snapshots={len(self)}, every={self.every}, at_epoch_end={self.at_epoch_end})"


def _count_new(prev: Tensor, cur: Tensor) -> int:
    """Entries of ``cur`` not in ``prev`` (both ascending, duplicate-free)."""
    if cur.numel() == 0:
        return 0
    if prev.numel() == 0:
        return int(cur.numel())
    return int(cur.numel()) - _count_common(prev, cur)


def _count_common(a: Tensor, b: Tensor) -> int:
    if a.numel() == 0 or b.numel() == 0:
        return 0
    return int(torch.isin(b, a).sum())
