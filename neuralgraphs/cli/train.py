"""``neuralgraphs train NAME_OR_PATH [key=value ...]``: run a named experiment config (or a YAML file).

A config is a plain YAML mapping with four sections and an optional fifth::

    model: {builder: mobilenet_v1_graphs, width: 0.225, wiring: dnw, num_classes: 10, in_channels: 1}
    data: {name: digits, batch_size: 64}
    train: {epochs: 15, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-5, schedule: cosine, label_smoothing: 0.0}
    seed: 0
    record: {every: 10}   # steps between two records of the active edges (optional)
    init: {from: runs/digits-static-dnw, weights: trained}   # start from a finished run (optional)

``init`` turns a finished DNW run into the paper's two controls: its learned wiring is frozen
(:func:`neuralgraphs.freeze_wiring`) and trained again, from its trained weights (``weights: trained``,
fine-tuning) or from the weights it started with (``weights: initial``, a one-shot lottery ticket; the model
is rebuilt from the run's ``config.yaml`` and seed, which decide its initial weights: :func:`build_model`
seeds torch with the config's ``seed``).  ``init.from`` is the run's output folder; its ``model`` section
must be this config's.

``model.builder`` names a model constructor of :data:`BUILDERS`; the other ``model`` keys are its arguments,
checked against its signature before anything is built.  ``key=value`` overrides use dotted keys
(``train.epochs=2``, ``model.wiring=random``); values are read as YAML scalars and must have the type of the
value they replace.  An unknown key, a value of the wrong type or a YAML tag is an error naming it before
anything trains.  The run writes ``DIR/config.yaml`` (the resolved config), ``DIR/metrics.csv`` (one row per
epoch, rewritten atomically after each), ``DIR/checkpoint.pt`` (atomic, every epoch and every
``train.checkpoint_every`` steps) and, for a model with
a learned or fixed wiring, the wiring over training: ``DIR/wiring.pt`` (the active edges every
``record.every`` steps, an optional fifth section, and at every epoch end), ``DIR/wiring.html`` (the slider
page of :mod:`neuralgraphs.analysis.page`), ``DIR/wiring-final-NAME.graphml`` and two PNG plots.
``--resume`` continues from the checkpoint exactly (``neuralgraphs.train.fit``), wiring record included.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import os
from typing import Any, Callable, Dict, List, Tuple

__all__ = ["add_parser", "BUILDERS", "config_names", "load_config", "resolve_config", "build_model",
           "init_model", "METRIC_COLUMNS"]

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SECTIONS = ("model", "data", "train", "record", "init", "seed")
TRAIN_KEYS = {"epochs": int, "lr": float, "momentum": float, "weight_decay": float, "schedule": str,
              "label_smoothing": float, "milestones": list, "device": str, "wiring_check_every": int,
              "checkpoint_every": int, "warmup_epochs": int}
DATA_KEYS = {"name": str, "batch_size": int, "as_images": bool, "root": str, "augment": bool, "image_size": int,
             "workers": int}
RECORD_KEYS = {"every": int, "tensorboard": bool}
INIT_KEYS = {"from": str, "weights": str}
INIT_WEIGHTS = ("trained", "initial")
DATASETS = ("digits", "cifar10", "mnist", "folder")
# per-channel mean and std of each source's training images (ImageNet's for image folders)
_STATISTICS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)), "mnist": ((0.1307,), (0.3081,)),
               "folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
#: steps between two records of the active edges (``record.every``) when the config does not say
RECORD_EVERY = 10
METRIC_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "active_edges",
                  "swapped", "time")


def _builders() -> Dict[str, Callable[..., Any]]:
    from neuralgraphs.models import (DigitsGraphClassifier, MobileNetV1Graphs, RandWireNet, TinyClassifier,
                                     digits_network, mobilenet_v1, resnet50, sparse_resnet50)

    return {"digits_graph_classifier": DigitsGraphClassifier, "digits_network": digits_network,
            "tiny_classifier": TinyClassifier, "randwire_net": RandWireNet,
            "mobilenet_v1_graphs": MobileNetV1Graphs, "mobilenet_v1": mobilenet_v1, "resnet50": resnet50,
            "sparse_resnet50": sparse_resnet50}


#: builder names of ``model.builder``
BUILDERS = ("digits_graph_classifier", "digits_network", "tiny_classifier", "randwire_net", "mobilenet_v1_graphs",
            "mobilenet_v1", "resnet50", "sparse_resnet50")


def config_names() -> List[str]:
    """Names of the configs shipped in the package."""
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def load_config(name_or_path: str) -> Dict[str, Any]:
    """The config of a shipped name or a YAML file path, checked (see :func:`check_config`)."""
    from neuralgraphs.train import load_yaml_config

    path = name_or_path
    if not os.path.exists(path):
        if name_or_path not in config_names():
            raise ValueError(f"config: {name_or_path!r} is neither a YAML file nor a shipped config; shipped: "
                             f"{', '.join(config_names())}")
        path = os.path.join(CONFIG_DIR, name_or_path + ".yaml")
    return check_config(load_yaml_config(path), source=path)


def check_config(config: Dict[str, Any], source: str = "config") -> Dict[str, Any]:
    """Check the sections and the types of the ``data`` / ``train`` keys; return the config."""
    unknown = [k for k in config if k not in SECTIONS]
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    for section in ("model", "data", "train"):
        if not isinstance(config.get(section), dict):
            raise ValueError(f"{source}: section {section!r} must be a mapping")
    builder = config["model"].get("builder")
    if builder not in BUILDERS:
        raise ValueError(f"{source}: model.builder must be one of {list(BUILDERS)}, got {builder!r}")
    for section in ("record", "init"):
        if not isinstance(config.get(section, {}), dict):
            raise ValueError(f"{source}: section {section!r} must be a mapping")
    for section, keys in (("data", DATA_KEYS), ("train", TRAIN_KEYS), ("record", RECORD_KEYS),
                          ("init", INIT_KEYS)):
        for key, value in config.get(section, {}).items():
            if key not in keys:
                raise ValueError(f"{source}: unknown key {section}.{key}; allowed: {sorted(keys)}")
            _check_type(f"{section}.{key}", value, keys[key])
    if config["data"].get("name", "digits") not in DATASETS:
        raise ValueError(f"{source}: data.name must be one of {list(DATASETS)}, got {config['data'].get('name')!r}")
    if "epochs" not in config["train"] or "lr" not in config["train"]:
        raise ValueError(f"{source}: train.epochs and train.lr are required")
    if config.get("record", {}).get("every", 1) < 1:
        raise ValueError(f"{source}: record.every: expected a positive int, got {config['record']['every']}")
    init = config.get("init")
    if init is not None:
        if "from" not in init:
            raise ValueError(f"{source}: init.from is required: the output folder of a finished DNW run")
        if init.get("weights", "trained") not in INIT_WEIGHTS:
            raise ValueError(f"{source}: init.weights must be one of {list(INIT_WEIGHTS)}, got {init['weights']!r}")
    seed = config.get("seed", 0)
    _check_type("seed", seed, int)
    return config


def _check_type(key: str, value: Any, kind: type) -> None:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        article = "an" if kind is int else "a"
        raise ValueError(f"{key}: expected {article} {kind.__name__}, got {type(value).__name__} {value!r}")


def resolve_config(config: Dict[str, Any], overrides: List[str]) -> Dict[str, Any]:
    """``config`` with ``key=value`` overrides applied (dotted keys; YAML scalar values)."""
    import yaml

    out = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override: expected key=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{key}: {text!r} is not a plain YAML value ({exc})") from None
        parts = key.split(".")
        if key == "seed":
            out["seed"] = value
            continue
        if len(parts) != 2 or parts[0] not in ("model", "data", "train", "record", "init"):
            raise ValueError(f"override: unknown key {key!r}; expected seed or "
                             "model./data./train./record./init.<key>")
        section, name = parts
        if section == "model" and name != "builder" and name in out["model"]:
            old = out["model"][name]
            if old is not None and value is not None and type(old) is not type(value) and not (
                    isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool)):
                raise ValueError(f"{key}: expected a {type(old).__name__} like the config's {old!r}, got "
                                 f"{type(value).__name__} {value!r}")
        out.setdefault(section, {})[name] = value
    return check_config(out, source="overrides")


def build_model(config: Dict[str, Any]):
    """The model of a config (``model.builder`` called with the other ``model`` keys), its initial weights
    drawn from torch seeded with the config's ``seed`` (the global generator is left as it was)."""
    import torch

    from neuralgraphs.train import apply_config

    args = {k: v for k, v in config["model"].items() if k != "builder"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.get("seed", 0))
        return apply_config(_builders()[config["model"]["builder"]], args)


def init_model(model: Any, config: Dict[str, Any], from_run: bool = True) -> Any:
    """Apply the config's ``init`` section to ``model`` (built by :func:`build_model` from ``config``): load
    the finished run of ``init.from``, freeze its learned wiring and keep its trained weights or go back to
    its initial ones.  With ``from_run=False`` the wiring is only frozen, as it is in the control's own
    checkpoints, which are loaded next (a resume, ``inspect``: the first run need not be there any more).
    A config without ``init`` returns ``model`` unchanged."""
    from neuralgraphs.train import load_checkpoint
    from neuralgraphs.wiring import freeze_wiring

    init = config.get("init")
    if init is None:
        return model
    if not from_run:
        return freeze_wiring(model)
    run = init["from"]
    source_config, checkpoint = os.path.join(run, "config.yaml"), os.path.join(run, "checkpoint.pt")
    for path in (source_config, checkpoint):
        if not os.path.isfile(path):
            raise ValueError(f"init.from: {run!r} is not the output folder of a run: {path} is missing")
    source = load_config(source_config)
    if source["model"] != config["model"]:
        differ = sorted(k for k in set(source["model"]) | set(config["model"])
                        if source["model"].get(k) != config["model"].get(k))
        raise ValueError(f"init.from: the run in {run!r} trained another model: model.{', model.'.join(differ)} "
                         f"differ ({ {k: source['model'].get(k) for k in differ} } there)")
    state = load_checkpoint(checkpoint)
    epochs = source["train"]["epochs"]
    if int(state["epoch"]) != epochs or state.get("partial") is not None:
        raise ValueError(f"init.from: the run in {run!r} is not finished (epoch {state['epoch']} of {epochs}); "
                         "resume it first")
    initial = build_model(source).state_dict() if init.get("weights", "trained") == "initial" else None
    model.load_state_dict(state["model"])
    try:
        freeze_wiring(model, reset_to=initial)
    except ValueError as exc:
        raise ValueError(f"init.from: the run in {run!r} did not learn a wiring ({exc})") from None
    return model


def _loaders(config: Dict[str, Any]) -> Tuple[Any, Any]:
    """Train and test loaders of ``config["data"]``: the embedded digits, or CIFAR-10 (the python batches),
    MNIST (IDX files) or an image folder tree (``root/train/<class>/...`` and ``root/val/<class>/...``) read
    from ``data.root``.  The train loader shuffles with its own seeded generator (which ``fit`` reseeds and
    checkpoints); augmentation (``data.augment``, default on for CIFAR-10 and image folders: padded random
    crops and flips, or random-resized crops and flips for folders) draws from torch's generator."""
    import torch
    from torch.utils.data import DataLoader

    from neuralgraphs.train import digits_loaders
    from neuralgraphs.train.data import (CIFAR10Folder, Compose, ImageFolderDataset, MNISTFolder,
                                         RandomResizedCropFlip, ResizeCenterCrop, normalize, random_crop_flip)

    data = config["data"]
    name, batch = data.get("name", "digits"), data.get("batch_size", 64)
    workers = data.get("workers", 0)
    if name == "digits":
        return digits_loaders(batch, seed=config.get("seed", 0), as_images=data.get("as_images", True),
                              num_workers=workers)
    root = data.get("root")
    if root is None:
        raise ValueError(f"data.root: the {name} data is read from a local folder; give --data DIR or data.root=DIR")
    if not os.path.isdir(root):
        raise ValueError(f"data.root: {root!r} is not a folder")
    mean, std = _STATISTICS[name]
    augment = data.get("augment", name in ("cifar10", "folder"))
    size = data.get("image_size")
    resize = ResizeCenterCrop(size) if size is not None else None
    if name == "folder" and augment:
        # the ImageNet recipe: a random window of 8-100 % of the image resized to the square, flipped
        if size is None:
            raise ValueError("data.image_size: the random-resized crop of image folders needs the output size; "
                             "give data.image_size=N or data.augment=false")
        train_tf = Compose(RandomResizedCropFlip(size), normalize(mean, std))
    else:
        train_tf = Compose(resize, random_crop_flip() if augment else None, normalize(mean, std))
    test_tf = Compose(resize, normalize(mean, std))
    try:
        if name == "cifar10":
            train_set, test_set = CIFAR10Folder(root, True, train_tf), CIFAR10Folder(root, False, test_tf)
        elif name == "mnist":
            train_set, test_set = MNISTFolder(root, True, train_tf), MNISTFolder(root, False, test_tf)
        else:
            train_set = ImageFolderDataset(os.path.join(root, "train"), train_tf)
            test_set = ImageFolderDataset(os.path.join(root, "val"), test_tf)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f"data.root: cannot read {name} from {root!r}: {exc}") from None
    generator = torch.Generator()
    generator.manual_seed(config.get("seed", 0))
    return (DataLoader(train_set, batch_size=batch, shuffle=True, generator=generator, num_workers=workers),
            DataLoader(test_set, batch_size=batch, shuffle=False, num_workers=workers))


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Metrics:
    """A fit callback writing ``metrics.csv`` from the whole history after every epoch (so a resumed run
    writes the rows an uninterrupted one would), with active edges and edges swapped since the last row."""

    def __init__(self, path: str, steps_per_epoch: int, wiring: "_WiringFiles") -> None:
        self.path, self.steps_per_epoch, self.wiring = path, steps_per_epoch, wiring
        self.rows: List[Dict[str, Any]] = []

    def on_fit_start(self, model, state) -> None:
        done = int(state.get("epoch", 0))
        self.rows = []
        if done and os.path.isfile(self.path):
            # a resumed run: the rows of the epochs the checkpoint holds (a row written after the last
            # checkpoint, before a kill, is dropped: that epoch runs again)
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [row for row in csv.DictReader(f)][:done]

    def _row(self, record: Dict[str, Any], active, swapped) -> Dict[str, Any]:
        return {"epoch": record["epoch"], "step": record["epoch"] * self.steps_per_epoch, "lr": record["lr"],
                "train_loss": record["train_loss"], "train_acc": record["train_acc"],
                "test_loss": record["test_loss"], "test_acc": record["test_acc"], "active_edges": active,
                "swapped": swapped, "time": record["time"]}

    def on_epoch_end(self, model, epoch, record) -> None:
        # from the wiring record (called after it): this epoch's end against the previous epoch's end (or the
        # start), both kept across a resume, even one from inside the epoch
        active = swapped = None
        if self.wiring.enabled:
            from neuralgraphs.analysis.history import _count_new

            history = self.wiring.history
            previous = "start" if epoch == 1 else f"epoch {epoch - 1}"
            before = history.records[history.labels.index(previous)]
            now = history.records[-1]
            active = sum(int(t.numel()) for t in now.values())
            swapped = sum(_count_new(before[name], now[name]) for name in now)
        self.rows.append(self._row(record, active, swapped))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(self.rows)
        _write_atomic(self.path, buf.getvalue())


class _TensorBoard:
    """A fit callback writing TensorBoard event files to ``DIR/tensorboard`` (when the ``tensorboard`` package
    is installed): per epoch, at its last step, the scalars of ``metrics.csv`` and the active-edge matrix of
    every wired module of at most :data:`TENSORBOARD_IMAGE_MAX` nodes as an image (row = target, column =
    source).  A resumed run purges the events after the checkpoint's step, so the curves show each step once."""

    def __init__(self, folder: str, steps_per_epoch: int, metrics: "_Metrics") -> None:
        self.folder, self.steps_per_epoch, self.metrics = folder, steps_per_epoch, metrics
        self.writer = None

    def on_fit_start(self, model, state) -> None:
        from torch.utils.tensorboard import SummaryWriter

        step = int(state.get("step", 0))
        # TensorBoard drops the earlier events at steps >= purge_step: those written after the checkpoint
        self.writer = SummaryWriter(self.folder, purge_step=step + 1 if step else None)

    def on_epoch_end(self, model, epoch, record) -> None:
        import torch

        from neuralgraphs.analysis.history import wired_modules

        row = self.metrics.rows[-1]
        step = epoch * self.steps_per_epoch
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "active_edges", "swapped"):
            if row.get(key) is not None:
                self.writer.add_scalar(key, float(row[key]), step)
        for name, module in wired_modules(model):
            n = module.graph.num_nodes
            if n > TENSORBOARD_IMAGE_MAX:
                continue
            with torch.no_grad():
                index = module.active().index.cpu()
            src, dst = module.graph.edge_index[:, index]
            image = torch.zeros(1, n, n)
            image[0, dst, src] = 1.0
            self.writer.add_image(f"wiring/{name or 'model'}", image, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


#: the largest wired module (in nodes) drawn as an image in TensorBoard
TENSORBOARD_IMAGE_MAX = 2048


class _WiringFiles:
    """A fit callback recording the active edges every ``every`` steps and at every epoch end, written after
    each epoch to ``wiring.pt`` (indices only, atomic) and ``wiring.html`` (the slider page).

    A resumed run reloads ``wiring.pt`` and keeps the records up to the checkpoint's step (records written
    after it, before a kill, are taken again), so it ends with the records of an uninterrupted run."""

    def __init__(self, out: str, every: int, title: str) -> None:
        from neuralgraphs.analysis.history import WiringHistory

        self.out, self.title = out, title
        self.history = WiringHistory(every=every, at_epoch_end=True)
        self.enabled = False

    def on_fit_start(self, model, state) -> None:
        from neuralgraphs.analysis.history import wired_modules
        from neuralgraphs.train import load_checkpoint

        self.enabled = bool(wired_modules(model))
        if not self.enabled:
            return
        path = os.path.join(self.out, "wiring.pt")
        done = int(state.get("step", 0))
        if done and os.path.isfile(path):
            self.history.load_state_dict(load_checkpoint(path))
            keep = sum(step <= done for step in self.history.steps)  # steps ascend: a prefix
            self.history.truncate(keep)
            if keep:
                # the uninterrupted run took no record here unless one was due (and is kept)
                self.history._step = done
                return
        self.history.on_fit_start(model, state)

    def on_step_end(self, model, step, loss) -> None:
        if self.enabled:
            self.history.on_step_end(model, step, loss)

    def on_epoch_end(self, model, epoch, record) -> None:
        if not self.enabled:
            return
        from neuralgraphs.analysis.page import wiring_page_data, write_wiring_page

        self.history.on_epoch_end(model, epoch, record)
        self._save()
        write_wiring_page(wiring_page_data(model, self.history, title=self.title),
                          os.path.join(self.out, "wiring.html"))

    def on_checkpoint(self, model, state) -> None:
        """Before a checkpoint inside an epoch: the records so far, so that a resume from it keeps them."""
        if self.enabled:
            self._save()

    def _save(self) -> None:
        from neuralgraphs.train import save_checkpoint

        # the first snapshot and then the changes, 4 bytes an index (WiringHistory.state_dict)
        save_checkpoint(os.path.join(self.out, "wiring.pt"), self.history.state_dict())

    def finish(self, model) -> List[str]:
        """The final active wiring as GraphML (``wiring-final-NAME.graphml``, one per wired module: every
        node, the active edges with their weights) and, when matplotlib is installed, ``wiring-swaps.png``
        and ``wiring-degrees.png``.  Returns the files written."""
        if not self.enabled:
            return []
        import networkx as nx

        from neuralgraphs.analysis.history import wired_modules

        written, graphs = [], {}
        last = self.history.records[-1]
        for name, module in wired_modules(model):
            label = name or "model"
            graph = module.graph.to_networkx(weight=module.weight.detach().cpu(), active=last[name],
                                             active_only=True)
            graphs[label] = graph
            written.append(os.path.join(self.out, f"wiring-final-{label}.graphml"))
            nx.write_graphml(graph, written[-1])
        try:
            from neuralgraphs.viz import plot_degree_distributions, plot_swaps

            swaps = {label: [0] + [s[name] for s in self.history.swaps(per_module=True)]
                     for label, name in zip(graphs, last)}
            written.append(plot_swaps(self.history.steps, swaps, os.path.join(self.out, "wiring-swaps.png")))
            written.append(plot_degree_distributions(graphs, os.path.join(self.out, "wiring-degrees.png")))
        except ImportError:  # matplotlib is an optional extra
            pass
        return written


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a named experiment config (or a YAML file)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", help="a shipped config name (see --list) or a YAML file")
    p.add_argument("overrides", nargs="*", help="key=value overrides (dotted keys: train.epochs=2)")
    p.add_argument("--out", default=None, help="output folder (default: runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="folder of the config's data set (CIFAR-10, MNIST, image folders); sets data.root")
    p.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    p.add_argument("--show", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=command)
    return p


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import yaml

    if args.list:
        for name in config_names():
            print(name)
        return 0
    if not args.config:
        parser.error("train: give a config name or YAML file (or --list)")
    try:
        config = resolve_config(load_config(args.config), args.overrides)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if args.data is not None:  # the command line wins over the config and its overrides
        config["data"]["root"] = args.data
    text = yaml.safe_dump(config, sort_keys=False)
    if args.show:
        print(text, end="")
        return 0
    from neuralgraphs.train import fit

    try:
        model = build_model(config)
    except (TypeError, ValueError) as exc:
        parser.error(f"model: {exc}")
    name = os.path.splitext(os.path.basename(args.config))[0]
    out = args.out or os.path.join("runs", name)
    try:
        init_model(model, config, from_run=not (args.resume and os.path.isfile(os.path.join(out, "checkpoint.pt"))))
    except ValueError as exc:
        parser.error(str(exc))
    train_args = dict(config["train"])
    rank, started = _start_distributed(train_args)
    try:
        if rank == 0:
            os.makedirs(out, exist_ok=True)
            _write_atomic(os.path.join(out, "config.yaml"), text)
        try:
            train_loader, test_loader = _loaders(config)
        except (ValueError, ImportError) as exc:
            parser.error(str(exc))
        # files are written by rank 0 only; every rank trains the same way
        wiring = _WiringFiles(out, config.get("record", {}).get("every", RECORD_EVERY), title=name)
        metrics = _Metrics(os.path.join(out, "metrics.csv"), len(train_loader), wiring)
        callbacks: List[Any] = [wiring, metrics]
        board = None
        if rank == 0 and config.get("record", {}).get("tensorboard", True) and _has_tensorboard():
            board = _TensorBoard(os.path.join(out, "tensorboard"), len(train_loader), metrics)
            callbacks.append(board)
        try:
            history = fit(model, train_loader, test_loader, seed=config.get("seed", 0),
                          checkpoint=os.path.join(out, "checkpoint.pt"), resume=args.resume,
                          callbacks=callbacks if rank == 0 else [], **train_args)
        except ValueError as exc:  # a refused resume, a batch the ranks cannot share: the run's inputs
            parser.error(f"train: {exc}")
        finally:
            if board is not None:
                board.close()
        if rank == 0:
            wiring.finish(model)
            print(f"{name}: test accuracy {100 * history['test_acc'][-1]:.1f} % after {history['epoch'][-1]} "
                  f"epochs; results in {out}")
    finally:
        if started:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _start_distributed(train_args: Dict[str, Any]) -> Tuple[int, bool]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment): join the process group (nccl when
    ``train.device`` is CUDA, each rank on ``cuda:LOCAL_RANK``; gloo otherwise).  Returns this rank and
    whether the group was started here."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, False
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.get_rank(), False
    cuda = str(train_args.get("device", "cpu")).startswith("cuda")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        train_args["device"] = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), True
