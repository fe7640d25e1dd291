"""Images per second of raysynth's evaluation training loop against a plain PyTorch loop.

Same model (ConvNet), same data (real Fashion-MNIST, or digits where it is missing), same batch,
same optimizer and schedule, same threads, in one run. The plain loop is the textbook one:
``DataLoader(TensorDataset(...), shuffle=True)``.

    uv run python benchmarks/eval_throughput.py --out benchmarks/results/eval_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from raysynth.data import load_dataset, make_split
from raysynth.evaluation.protocol import build_seeded, train_classifier
from raysynth.spec.schema import EvaluationSpec
from raysynth.spec import default_cache_dir


def plain_loop(images, labels, protocol: EvaluationSpec, num_classes: int, seed: int) -> None:
    model = build_seeded(protocol, channels=images.shape[1], num_classes=num_classes, image_size=images.shape[-1], seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[protocol.epochs // 2], gamma=0.1)
    loader = DataLoader(TensorDataset(images, labels), batch_size=protocol.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    model.train()
    for _ in range(protocol.epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--images-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cache-dir", default=str(default_cache_dir(os.environ)))
    parser.add_argument("--out", default="benchmarks/results/eval_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        dataset = load_dataset("fashion-mnist", data_root=None, cache_dir=Path(args.cache_dir), allow_download=False)
    except Exception:
        dataset = load_dataset("digits", data_root=None, cache_dir=Path(args.cache_dir))
    images, labels = make_split(dataset, args.images_per_class, seed=0).fewshot
    protocol = EvaluationSpec(classifier="convnet", width=args.width, epochs=args.epochs)
    device = torch.device("cpu")
    seen = len(labels) * args.epochs

    timings = {"raysynth": [], "plain": []}
    plain_loop(images, labels, protocol, dataset.num_classes, 99)  # warm-up of both paths (allocator, kernels)
    train_classifier(images, labels, num_classes=dataset.num_classes, protocol=protocol, seed=99, device=device)
    for repeat in range(args.repeats):  # interleaved, so drift in machine load hits both loops alike
        start = time.perf_counter()
        train_classifier(images, labels, num_classes=dataset.num_classes, protocol=protocol, seed=repeat, device=device)
        timings["raysynth"].append(seen / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_loop(images, labels, protocol, dataset.num_classes, repeat)
        timings["plain"].append(seen / (time.perf_counter() - start))
    best = {k: max(v) for k, v in timings.items()}
    result = {
        "benchmark": "eval_throughput", "dataset": dataset.name, "model": f"convnet-{args.width}",
        "images": len(labels), "epochs": args.epochs, "batch_size": protocol.batch_size, "threads": args.threads,
        "device": "cpu", "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "images_per_second": timings, "best_images_per_second": best,
        "ratio_raysynth_over_plain": best["raysynth"] / best["plain"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
