"""MobileNetV1 as a chain of five neural graphs: DNW against a random wiring at the same edge budget.

On the bundled 8x8 digits by default (stem stride 1; a few minutes of CPU for the full run).  With
``--imagenet DIR`` (an image folder, ``DIR/train/<class>/*`` and ``DIR/val/<class>/*``) it trains on it with
the paper's recipe (``MOBILENET_IMAGENET_RECIPE``: 250 epochs, batch 512, SGD lr 0.1 cosine per step,
momentum 0.9, weight decay 5e-5) at 224 x 224; ``--epochs`` shortens it.

    python examples/mobilenet_chain.py            # digits, DNW and random at x0.225
    python examples/mobilenet_chain.py --quick    # a few seconds
    python examples/mobilenet_chain.py --imagenet /data/imagenet --epochs 2 --device cuda
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from neuralgraphs.analysis import count_flops, count_parameters  # noqa: E402
from neuralgraphs.models import MOBILENET_IMAGENET_RECIPE, MobileNetV1Graphs  # noqa: E402
from neuralgraphs.sparse import compact  # noqa: E402
from neuralgraphs.train import digits_loaders, fit  # noqa: E402


class ResizeCrop:
    """Resize the shorter side to ``resize``, then crop ``size`` (random with a flip in training, else the
    centre): the usual ImageNet preprocessing, on ``[C, H, W]`` tensors."""

    def __init__(self, size: int = 224, resize: int = 256, train: bool = True) -> None:
        self.size, self.resize, self.train = size, resize, train

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        x = F.interpolate(x[None], size=(max(self.size, round(h * scale)), max(self.size, round(w * scale))),
                          mode="bilinear", align_corners=False, antialias=True)[0]
        h, w = x.shape[-2:]
        if self.train:
            top, left = int(torch.randint(h - self.size + 1, ())), int(torch.randint(w - self.size + 1, ()))
        else:
            top, left = (h - self.size) // 2, (w - self.size) // 2
        x = x[:, top:top + self.size, left:left + self.size]
        if self.train and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(-1, 1, 1)[:x.size(0)]
        std = torch.tensor([0.229, 0.224, 0.225]).view(-1, 1, 1)[:x.size(0)]
        return (x - mean) / std


def imagenet_loaders(root: str, batch_size: int, workers: int):
    from torch.utils.data import DataLoader

    from neuralgraphs.train.data import ImageFolderDataset

    train = ImageFolderDataset(os.path.join(root, "train"), transform=ResizeCrop(train=True))
    val = ImageFolderDataset(os.path.join(root, "val"), transform=ResizeCrop(train=False))
    return (DataLoader(train, batch_size, shuffle=True, num_workers=workers, drop_last=True),
            DataLoader(val, batch_size, num_workers=workers), len(train.classes))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (for tests)")
    parser.add_argument("--width", type=float, default=0.225, help="edge budget d (default: 0.225)")
    parser.add_argument("--imagenet", metavar="DIR", default=None, help="train on an image folder instead")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.imagenet:
        recipe = dict(MOBILENET_IMAGENET_RECIPE)
        batch = recipe.pop("batch_size")
        if args.epochs:
            recipe["epochs"] = args.epochs
        train_loader, test_loader, classes = imagenet_loaders(args.imagenet, batch, args.workers)
        make = dict(num_classes=classes)
        shape = (3, 224, 224)
    else:
        recipe = dict(epochs=args.epochs or (1 if args.quick else 15), lr=0.05, momentum=0.9, weight_decay=5e-5,
                      schedule="cosine")
        train_loader, test_loader = digits_loaders(64, seed=0)
        if args.quick:  # a few batches
            train_loader = [b for _, b in zip(range(4), train_loader)]
        make = dict(num_classes=10, in_channels=1, stem_stride=1)
        shape = (1, 8, 8)

    print(f"{'wiring':<7} {'test acc':>8} {'edges':>7} {'effective':>9} {'params':>9} {'MACs':>11} {'time':>6}")
    for wiring in ("dnw", "random"):
        torch.manual_seed(args.seed)
        model = MobileNetV1Graphs(width=args.width, wiring=wiring, seed=args.seed, **make)
        t0 = time.perf_counter()
        history = fit(model, train_loader, test_loader, device=args.device, progress=False, seed=args.seed, **recipe)
        active = model.num_edges
        # inference model: dead nodes and ineffective edges dropped, nothing selected
        model = compact(model.cpu().eval())
        print(f"{wiring:<7} {100 * history['test_acc'][-1]:>7.1f}% {active:>7} {model.num_edges:>9} "
              f"{count_parameters(model):>9,} {count_flops(model, shape):>11,} {time.perf_counter() - t0:>5.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
