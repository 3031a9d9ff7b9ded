"""A small, deterministic SGD training loop with resumable checkpoints.

:func:`fit` trains any classifier ``model(x) -> logits [B, C]`` with SGD (momentum, weight decay not applied
to norm parameters and biases), a learning-rate schedule and optional label smoothing, and records one row
per epoch (train loss / accuracy, test loss / accuracy, learning rate, seconds). With ``checkpoint=`` the full
training state -- model, optimizer, scheduler, epoch, history and every random generator involved -- is saved
atomically after each epoch, so ``resume=True`` continues exactly where the run stopped: on CPU a resumed run
ends with the same weights, wiring and accuracy as an uninterrupted one.

Callbacks are objects with any of the methods ``on_fit_start(model, state)`` (``state`` holds ``epoch`` and
``step`` done so far, ``epochs``, ``optimizer``, ``scheduler``, ``history``), ``on_step_end(model, step,
loss)`` and ``on_epoch_end(model, epoch, record)`` (``step`` counts optimizer steps from 1, ``epoch`` epochs
from 1, ``record`` is that epoch's row), or plain callables, called as ``fn(model, epoch, record)`` after each
epoch. :class:`~neuralgraphs.analysis.history.WiringHistory` is such a callback.

tqdm is imported only when a progress bar is shown.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from neuralgraphs._checks import check_float, check_int

from .checkpoint import load_checkpoint, save_checkpoint
from .schedules import constant, cosine, label_smoothing_loss, multistep, param_groups_no_weight_decay

__all__ = ["fit", "evaluate", "SCHEDULES", "HISTORY_KEYS"]

#: Learning-rate schedules understood by :func:`fit`.
SCHEDULES = ("cosine", "multistep", "constant")

#: Keys of the dict returned by :func:`fit`; each holds one value per epoch.
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "time")

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------

def _check_loader(name: str, loader: Any) -> Iterable:
    if not hasattr(loader, "__iter__"):
        raise TypeError(f"{name}: expected an iterable of (x, y) batches such as a DataLoader, "
                        f"got {type(loader).__name__}")
    return loader


def _loader_generators(loader: Any) -> List[torch.Generator]:
    """The generators that decide a loader's batch order: its own, its sampler's and its batch sampler's
    sampler's (a ``DataLoader(generator=g, shuffle=True)`` shares ``g`` with its sampler: counted once)."""
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    found: List[torch.Generator] = []
    for owner in (loader, sampler, getattr(batch_sampler, "sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


# ----------------------------------------------------------------------------------------------------------
# random state
# ----------------------------------------------------------------------------------------------------------

def _rng_state(loader: Any, device: torch.device) -> Dict[str, Any]:
    # Everything stored as tensors, ints and tuples so that a weights-only load accepts it.
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)),
    }
    state["loaders"] = [gen.get_state() for gen in _loader_generators(loader)]
    if device.type == "cuda":  # drop path and dropout draw on the training device
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Dict[str, Any], loader: Any, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_kind, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    for gen, gen_state in zip(_loader_generators(loader), _saved_loader_states(state)):
        gen.set_state(gen_state)


def _saved_loader_states(state: Dict[str, Any]) -> List[torch.Tensor]:
    # checkpoints of 0.1.0 hold one generator's state under "loader"
    return state.get("loaders", [state["loader"]] if "loader" in state else [])


def _seed_everything(seed: int, loader: Any) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    for gen in _loader_generators(loader):
        gen.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------

def _batch(batch: Any, device: torch.device):
    if not isinstance(batch, (list, tuple)) or len(batch) < 2:
        raise ValueError(f"loader: expected batches of (x, y), got {type(batch).__name__}")
    return batch[0].to(device), batch[1].to(device)


def evaluate(model: nn.Module, loader: Iterable, device: Union[str, torch.device] = "cpu",
             label_smoothing: float = 0.0) -> Dict[str, float]:
    """Mean loss and accuracy of a classifier over a loader, in eval mode and without gradients.

    The model's train / eval mode is restored afterwards.

    Args:
        model (torch.nn.Module): maps ``x`` to logits ``[B, C]``.
        loader (iterable): ``(x, y)`` batches, ``y`` int64 class indices.
        device (str or torch.device): where the batches go; the model must already be there.
            (default: ``"cpu"``)
        label_smoothing (float): smoothing of the reported loss, in ``[0, 1]``. (default: ``0.0``)

    Returns:
        dict: ``{"loss": float, "accuracy": float}`` (accuracy in ``[0, 1]``, averaged over samples).

    Raises:
        TypeError: if ``model`` is not a module or ``loader`` not iterable.
        ValueError: if the loader is empty or yields malformed batches.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_loader("loader", loader)
    label_smoothing = check_float("label_smoothing", label_smoothing, 0.0, 1.0)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        with torch.no_grad():
            for batch in loader:
                x, y = _batch(batch, device)
                logits = model(x)
                loss = label_smoothing_loss(logits, y, label_smoothing)
                total_loss += float(loss) * y.numel()
                correct += int((logits.argmax(1) == y).sum())
                count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("loader: yielded no samples")
    return {"loss": total_loss / count, "accuracy": correct / count}


# ----------------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------------

def _split_callbacks(callbacks: Sequence[Any]):
    starts, steps, epochs = [], [], []
    for i, cb in enumerate(callbacks):
        hooks = [getattr(cb, name, None) for name in ("on_fit_start", "on_step_end", "on_epoch_end")]
        if not any(callable(h) for h in hooks):
            if not callable(cb):
                raise TypeError(f"callbacks[{i}]: expected a callable fn(model, epoch, record) or an object with "
                                f"on_fit_start / on_step_end / on_epoch_end methods, got {type(cb).__name__}")
            epochs.append(cb)
            continue
        for hook, bucket in zip(hooks, (starts, steps, epochs)):
            if callable(hook):
                bucket.append(hook)
    return starts, steps, epochs


def _make_scheduler(schedule: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int,
                    milestones: Optional[Sequence[int]], warmup_epochs: int = 0):
    if schedule == "cosine":
        return cosine(optimizer, total_steps=epochs * steps_per_epoch,
                      warmup_steps=warmup_epochs * steps_per_epoch), True
    if schedule == "multistep":
        if milestones is None:
            # The DNW recipe's proportions: decay at 1/2 and 3/4 of the run.
            milestones = sorted({m for m in (epochs // 2, (3 * epochs) // 4) if 0 < m < epochs})
        return multistep(optimizer, list(milestones)), False
    return constant(optimizer), False


def _progress_enabled(progress: bool) -> bool:
    if not progress:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def fit(model: nn.Module, train_loader: Iterable, test_loader: Optional[Iterable] = None, *, epochs: int,
        lr: float, momentum: float = 0.9, weight_decay: float = 1e-4, schedule: str = "cosine",
        milestones: Optional[Sequence[int]] = None, label_smoothing: float = 0.0,
        device: Union[str, torch.device] = "cpu", progress: bool = True, checkpoint: Optional[PathLike] = None,
        resume: bool = False, seed: int = 0, callbacks: Sequence[Any] = (),
        history: Optional[Any] = None, wiring_check_every: int = 50,
        checkpoint_every: Optional[int] = None, warmup_epochs: int = 0) -> Dict[str, List[Any]]:
    """Train a classifier with SGD and return its per-epoch history.

    The run is deterministic given ``seed`` and the model's initial state: ``fit`` seeds torch, numpy and
    Python's ``random`` and, when the train loader has its own ``generator`` (as
    :func:`~neuralgraphs.train.digits_loaders` gives it) or its sampler has one, reseeds those too, so the
    batch order does not depend on earlier use of the loader. These global generators are restored when
    ``fit`` returns. On CPU the
    same seed gives the same weights, wiring and accuracies.

    ``schedule="cosine"`` decays the rate per step to 0 over the run (after ``warmup_epochs`` of a linear rise
    from 0, per step, as in ResNet-50's recipe); ``"multistep"`` multiplies it by 0.1 at
    each milestone epoch (default: half and three quarters of the run); ``"constant"`` keeps it. Weight decay
    is not applied to normalisation parameters or biases
    (:func:`~neuralgraphs.train.param_groups_no_weight_decay`).

    Args:
        model (torch.nn.Module): maps ``x`` to logits ``[B, C]``; moved to ``device``.
        train_loader (iterable): ``(x, y)`` batches; must have ``len()`` for the cosine schedule.
        test_loader (iterable, optional): evaluated after every epoch. (default: :obj:`None`)
        epochs (int): total number of epochs (a resumed run counts the epochs already done), ``>= 1``.
        lr (float): peak learning rate, ``> 0``.
        momentum (float): SGD momentum in ``[0, 1)``. (default: ``0.9``)
        weight_decay (float): L2 decay, ``>= 0``. (default: ``1e-4``)
        schedule (str): ``"cosine"``, ``"multistep"`` or ``"constant"``. (default: ``"cosine"``)
        milestones (list of int, optional): epochs of the multistep decay. (default: :obj:`None`)
        label_smoothing (float): in ``[0, 1]``. (default: ``0.0``)
        device (str or torch.device): training device. (default: ``"cpu"``)
        progress (bool): show tqdm bars over the epochs (with the last train and test accuracy) and over
            each epoch's batches (with the loss), only when stderr is a terminal.
            (default: :obj:`True`)
        checkpoint (str or os.PathLike, optional): file written atomically after every epoch with the model,
            optimizer, scheduler, epoch, history and random states. (default: :obj:`None`)
        resume (bool): when ``checkpoint`` exists, continue from it (a missing file starts a new run, so the
            same call can be repeated after an interruption).  The call must repeat the original one: a
            checkpoint written with other hyper-parameters or for another model is refused before anything
            is loaded. (default: :obj:`False`)
        seed (int): seed of the run, ``>= 0``. (default: ``0``)
        callbacks (sequence): callback objects or callables; see the module docstring. (default: ``()``)
        history (dict or callback, optional): a dict filled in place with the history (handy to inspect it
            after an interruption), or a callback object such as
            :class:`~neuralgraphs.analysis.history.WiringHistory`, which is then added to ``callbacks``.
            (default: :obj:`None`, a new dict)
        wiring_check_every (int): with more than one rank, compare the ranks' active edges every this many
            steps and at every epoch end (:func:`~neuralgraphs.train.distributed.check_same_wiring`).
            (default: ``50``)
        checkpoint_every (int, optional): also write ``checkpoint`` every this many optimizer steps inside an
            epoch; a resume from such a checkpoint replays the epoch's batch order, skips the batches done
            and continues with the random state saved at that step, so it ends as an uninterrupted run.
            Callbacks with an ``on_checkpoint(model, state)`` method are called just before each write
            (to save their own state alongside).  (default: :obj:`None`, at epoch ends only)
        warmup_epochs (int): with ``schedule="cosine"``, epochs of linear warm-up from 0 before the cosine
            decay, stepped per batch; fewer than ``epochs``. (default: ``0``)

    With an initialised process group of more than one rank the model is trained with
    ``DistributedDataParallel`` on ``train_loader``'s batches shared out between the ranks (see
    :mod:`neuralgraphs.train.distributed`: the same loss curve as a single-process run with the same global
    batch); only rank 0 writes ``checkpoint``, and resuming with another number of ranks is refused.

    Returns:
        dict: lists with one entry per epoch under :data:`HISTORY_KEYS`: ``epoch`` (from 1), ``train_loss``,
        ``train_acc`` (running averages over the epoch, in train mode), ``test_loss`` and ``test_acc``
        (:obj:`None` without ``test_loader``), ``lr`` (rate at the end of the epoch) and ``time``
        (seconds of training plus evaluation).

    Raises:
        TypeError, ValueError: on invalid arguments (the message names the argument); ValueError also when
            ``checkpoint`` lies in a missing folder, or when resuming from a checkpoint written with other
            hyper-parameters (epochs, schedule, seed, lr, momentum, weight decay, label smoothing,
            milestones, batches per epoch) or for a different model.
        FloatingPointError: if the training loss becomes NaN or infinite.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    _check_loader("train_loader", train_loader)
    if test_loader is not None:
        _check_loader("test_loader", test_loader)
    epochs = check_int("epochs", epochs, 1)
    lr = check_float("lr", lr, 0.0, open_low=True)
    momentum = check_float("momentum", momentum, 0.0, 1.0)
    if momentum >= 1.0:
        raise ValueError(f"momentum: expected a float in [0, 1), got {momentum}")
    weight_decay = check_float("weight_decay", weight_decay, 0.0)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {schedule!r}")
    label_smoothing = check_float("label_smoothing", label_smoothing, 0.0, 1.0)
    seed = check_int("seed", seed, 0)
    wiring_check_every = check_int("wiring_check_every", wiring_check_every, 1)
    if checkpoint_every is not None:
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        if checkpoint is None:
            raise ValueError("checkpoint_every: needs a checkpoint path to write to, got checkpoint=None")
    warmup_epochs = check_int("warmup_epochs", warmup_epochs, 0)
    if warmup_epochs and schedule != "cosine":
        raise ValueError(f"warmup_epochs: a warm-up is part of the cosine schedule, got schedule={schedule!r}")
    if warmup_epochs >= epochs:
        raise ValueError(f"warmup_epochs: expected fewer than epochs={epochs}, got {warmup_epochs}")
    if not isinstance(progress, bool):
        raise TypeError(f"progress: expected a bool, got {type(progress).__name__}")
    if not isinstance(resume, bool):
        raise TypeError(f"resume: expected a bool, got {type(resume).__name__}")
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint: expected a file path or None, got {type(checkpoint).__name__}")
        # found now, not after an epoch of training
        folder = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
        if os.path.isdir(checkpoint):
            raise ValueError(f"checkpoint: {os.fspath(checkpoint)!r} is a folder; expected a file path")
        if not os.path.isdir(folder):
            raise ValueError(f"checkpoint: the folder {folder!r} does not exist; create it first")
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks: expected a list or tuple, got {type(callbacks).__name__}")
    callbacks = list(callbacks)
    if history is None:
        history = {}
    elif not isinstance(history, dict):
        callbacks.append(history)
        history = {}
    for key in HISTORY_KEYS:
        history.setdefault(key, [])
    starts, step_hooks, epoch_hooks = _split_callbacks(callbacks)
    checkpoint_hooks = [cb.on_checkpoint for cb in callbacks if callable(getattr(cb, "on_checkpoint", None))]
    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        if schedule == "cosine":
            raise TypeError("train_loader: the cosine schedule needs a loader with len()") from None
        steps_per_epoch = 0
    if schedule == "cosine" and steps_per_epoch == 0:
        raise ValueError("train_loader: is empty")
    device = torch.device(device)
    from .distributed import check_same_wiring, shard_loader, world

    world_size = world()
    rank = torch.distributed.get_rank() if world_size > 1 else 0
    model.to(device)
    optimizer = torch.optim.SGD(param_groups_no_weight_decay(model, weight_decay), lr=lr, momentum=momentum)
    scheduler, per_step = _make_scheduler(schedule, optimizer, epochs, steps_per_epoch, milestones, warmup_epochs)
    run_info = {"epochs": epochs, "schedule": schedule, "seed": seed, "lr": lr, "momentum": momentum,
                "weight_decay": weight_decay, "label_smoothing": label_smoothing,
                "milestones": None if milestones is None else [int(m) for m in milestones],
                "steps_per_epoch": steps_per_epoch, "world_size": world_size, "warmup_epochs": warmup_epochs}
    net: nn.Module = model
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index or 0] if device.type == "cuda" else None)
        train_loader = shard_loader(train_loader, rank, world_size)

    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _restore_python_numpy_rng():
        start_epoch = 0
        partial = None  # the position inside an epoch of a checkpoint written by checkpoint_every
        if resume and checkpoint is not None and os.path.isfile(checkpoint):
            # on the host: generator states must be CPU tensors, and load_state_dict copies the weights to
            # wherever the model's parameters are
            state = load_checkpoint(checkpoint, map_location="cpu")
            _check_resumable(os.fspath(checkpoint), state, run_info, model, train_loader)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            partial = state.get("partial")
            for key in HISTORY_KEYS:
                history[key][:] = list(state["history"][key])
            _set_rng_state(state["rng"], train_loader, device)
        else:
            _seed_everything(seed, train_loader)
        step = start_epoch * steps_per_epoch + (int(partial["batches"]) if partial else 0)
        fit_state = {"epoch": start_epoch, "step": step, "epochs": epochs, "optimizer": optimizer,
                     "scheduler": scheduler, "history": history}
        for hook in starts:
            hook(model, fit_state)
        show = _progress_enabled(progress)
        def write_checkpoint(epoch_done: int, position: Optional[Dict[str, Any]]) -> None:
            for hook in checkpoint_hooks:
                hook(model, {"epoch": epoch_done, "step": step})
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch_done, "run": run_info,
                "history": {k: list(v) for k, v in history.items() if k in HISTORY_KEYS},
                "rng": _rng_state(train_loader, device), "partial": position})

        epoch_bar = None
        if show:
            from tqdm.auto import tqdm

            epoch_bar = tqdm(total=epochs, initial=start_epoch, desc="epochs", position=0)
        try:
            for epoch in range(start_epoch + 1, epochs + 1):
                t0 = time.perf_counter()
                net.train()
                total_loss, correct, count = 0.0, 0, 0
                skip = 0
                if partial is not None:
                    # replay the epoch's batch order from its start (a loader without its own generator shuffles
                    # from the global one, so every generator goes back), skip what was done, then continue with
                    # the random state of the checkpoint (skipped batches may have drawn augmentations)
                    _set_rng_state(partial["epoch_rng"], train_loader, device)
                    skip = int(partial["batches"])
                    total_loss, correct, count = float(partial["loss"]), int(partial["correct"]), int(partial["count"])
                    t0 -= float(partial["time"])
                epoch_start = _rng_state(train_loader, device) if checkpoint_every is not None else None
                batches: Iterable = train_loader
                bar = None
                if show:
                    bar = batches = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", leave=False, position=1,
                                         total=steps_per_epoch or None)
                try:
                    for batch_number, batch in enumerate(batches):
                        if batch_number < skip:
                            continue
                        if partial is not None:
                            _set_rng_state(state["rng"], None, device)
                            partial = None
                        x, y = _batch(batch, device)
                        logits = net(x)
                        loss = label_smoothing_loss(logits, y, label_smoothing)
                        optimizer.zero_grad(set_to_none=True)
                        if world_size > 1:
                            # W * (sum of this rank's losses) / global batch: DDP's mean over ranks is then the
                            # single-process batch mean
                            n_global = torch.tensor(float(y.numel()), device=device)
                            torch.distributed.all_reduce(n_global)
                            (loss * (y.numel() * world_size) / n_global).backward()
                        else:
                            loss.backward()
                        optimizer.step()
                        if per_step:
                            scheduler.step()
                        step += 1
                        loss_value = float(loss.detach())
                        if not math.isfinite(loss_value):
                            raise FloatingPointError(f"training loss became {loss_value} at epoch {epoch}, step "
                                                     f"{step}; lower lr (now {lr}) or check the inputs")
                        total_loss += loss_value * y.numel()
                        correct += int((logits.detach().argmax(1) == y).sum())
                        count += y.numel()
                        if world_size > 1 and step % wiring_check_every == 0:
                            check_same_wiring(model, step)
                        for hook in step_hooks:
                            hook(model, step, loss_value)
                        if (checkpoint is not None and checkpoint_every is not None and rank == 0
                                and step % checkpoint_every == 0 and batch_number + 1 < steps_per_epoch):
                            write_checkpoint(epoch - 1, {
                                "batches": batch_number + 1, "epoch_rng": epoch_start, "loss": total_loss,
                                "correct": correct, "count": count, "time": time.perf_counter() - t0})
                        if bar is not None:
                            bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)
                finally:
                    if bar is not None:
                        bar.close()
                if world_size > 1:
                    sums = torch.tensor([total_loss, float(correct), float(count)], dtype=torch.float64, device=device)
                    torch.distributed.all_reduce(sums)
                    total_loss, correct, count = float(sums[0]), int(sums[1]), int(sums[2])
                    check_same_wiring(model, step)
                if count == 0:
                    raise ValueError("train_loader: yielded no samples")
                if not per_step:
                    scheduler.step()
                test = evaluate(model, test_loader, device, label_smoothing) if test_loader is not None else None
                record = {
                    "epoch": epoch,
                    "train_loss": total_loss / count,
                    "train_acc": correct / count,
                    "test_loss": None if test is None else test["loss"],
                    "test_acc": None if test is None else test["accuracy"],
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "time": time.perf_counter() - t0,
                }
                for key in HISTORY_KEYS:
                    history[key].append(record[key])
                for hook in epoch_hooks:
                    hook(model, epoch, record)
                if checkpoint is not None and rank == 0:
                    write_checkpoint(epoch, None)
                if checkpoint is not None and world_size > 1:
                    torch.distributed.barrier()  # no rank runs ahead of the checkpoint it could be resumed from
                if epoch_bar is not None:
                    epoch_bar.set_postfix(train_acc=f"{record['train_acc']:.3f}", refresh=False,
                                          **({} if test is None else {"test_acc": f"{test['accuracy']:.3f}"}))
                    epoch_bar.update(1)
        finally:
            if epoch_bar is not None:
                epoch_bar.close()
    return history


_RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "run", "history", "rng")


def _check_resumable(path: str, state: Dict[str, Any], run_info: Dict[str, Any], model: nn.Module,
                     loader: Any) -> None:
    """Raise before anything is loaded, so a refused resume leaves the model untouched."""
    missing = [k for k in _RESUME_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint: {path!r} lacks {missing}; it was not written by fit")
    saved = state["run"] if isinstance(state["run"], dict) else {}
    for key, value in run_info.items():
        # keys a checkpoint of an older version did not record are not compared
        if (key in saved or key in ("epochs", "schedule")) and saved.get(key) != value:
            raise ValueError(f"checkpoint: {path!r} was written with {key}={saved.get(key)!r}, this call has "
                             f"{key}={value!r}; pass the original value to resume")
    current, weights = model.state_dict(), state["model"]
    if not isinstance(weights, dict):
        raise ValueError(f"checkpoint: {path!r} holds no model state dict")
    absent = [k for k in current if k not in weights]
    extra = [k for k in weights if k not in current]
    shapes = [f"{k} {list(weights[k].shape)} vs {list(v.shape)}" for k, v in current.items()
              if k in weights and isinstance(weights[k], torch.Tensor) and weights[k].shape != v.shape]
    if absent or extra or shapes:
        raise ValueError(f"checkpoint: {path!r} was written for a different model (missing {absent[:3]}, "
                         f"unexpected {extra[:3]}, shapes differ {shapes[:3]})")
    num_saved = len(_saved_loader_states(state["rng"] if isinstance(state["rng"], dict) else {}))
    num_gens = len(_loader_generators(loader))
    if num_saved != num_gens:
        raise ValueError(f"train_loader: the checkpoint holds the state of {num_saved} shuffling generator(s), "
                         f"this loader has {num_gens}; resume with a loader built like the original one")


@contextlib.contextmanager
def _restore_python_numpy_rng():
    # torch.random.fork_rng covers torch; fit must not leave Python's and numpy's generators changed either.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
