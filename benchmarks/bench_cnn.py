"""CNN embedding throughput: featbench's ``cnn:<model>`` vs a plain ``for batch: model(batch)``.

For each model and input resolution it prints images/s of

* ``plain``: the loop a user would write: per batch, resize the 32 x 32 uint8 images
  with ``F.interpolate``, normalize, ``model.forward_features``-equivalent
  (the model's own ``forward`` up to its pooled features) in fp32 under ``torch.no_grad``;
* ``featbench fp32`` and ``featbench <auto>``: ``CNNEmbedding.transform`` (channels-last,
  inference mode, and the precision ``auto`` picks: bf16 on CUDA and on CPUs with
  AVX-512 BF16 / AMX),

measured in the same run on the same images, and the ratios. Weights are random
(``--weights none``, the default) unless given: throughput does not depend on them.

    python benchmarks/bench_cnn.py [--models efficientnet-lite0,resnet18] [--sizes 64,128,224]
                                   [--n 512] [--batch-size 64] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from featbench.features.cnn import CNNEmbedding, resolve_precision


def load_images(n: int, data_dir: Path | None) -> tuple[np.ndarray, str]:
    if data_dir is not None and (data_dir / "cifar10-jpeg").is_dir():
        from featbench import load_dataset

        ds = load_dataset("cifar10", data_dir=data_dir)
        return ds.X_test[:n], f"CIFAR-10 (JPEG copy) test images, n={n}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), f"{n} random 32x32 images"


def plain_loop(est: CNNEmbedding, X: np.ndarray, size: int, batch_size: int) -> np.ndarray:
    """What a user would write: resize, normalize, forward, in fp32 NCHW."""
    loaded, net, device = est._network()
    model = net.model if hasattr(net, "model") else net  # the unwrapped classifier
    model = model.to(memory_format=torch.contiguous_format)
    mean = torch.tensor(loaded.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std, device=device).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            x = torch.from_numpy(X[start:start + batch_size]).to(device)
            x = x.permute(0, 3, 1, 2).float() / 255
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            out.append(net((x - mean) / std).float().cpu())
    net.to(memory_format=torch.channels_last)
    return torch.cat(out).numpy()


def timed(fn, *args, sync=lambda: None) -> float:
    t0 = time.perf_counter()
    fn(*args)
    sync()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="efficientnet-lite0,resnet18")
    parser.add_argument("--sizes", default="64,128,224")
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()

    X, what = load_images(args.n, args.data_dir)
    weights = None if args.weights.lower() == "none" else args.weights
    probe = CNNEmbedding(device=args.device)
    device = torch.device(probe.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    auto = resolve_precision("auto", device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{what}; device {device} ({name}), {torch.get_num_threads()} torch threads, "
          f"batch {args.batch_size}, auto precision = {auto}")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    header = (f"{'model':<20} {'size':>5} {'plain fp32':>11} {'fb fp32':>9} "
              f"{'fb ' + auto:>9} {'fp32/plain':>11} {auto + '/plain':>11}")
    print(header)
    for model in args.models.split(","):
        for size in map(int, args.sizes.split(",")):
            ests = {p: CNNEmbedding(model, weights=weights, size=size, device=args.device,
                                    precision=p, batch_size=args.batch_size).fit(X[:2])
                    for p in ("fp32", auto)}
            warm = X[: min(len(X), 2 * args.batch_size)]
            plain_loop(ests["fp32"], warm, size, args.batch_size)  # warm-up
            for est in ests.values():
                est.transform(warm)
            t_plain = timed(plain_loop, ests["fp32"], X, size, args.batch_size, sync=sync)
            t_fp32 = timed(ests["fp32"].transform, X, sync=sync)
            t_auto = timed(ests[auto].transform, X, sync=sync)
            r = [len(X) / t for t in (t_plain, t_fp32, t_auto)]
            print(f"{model:<20} {size:>5} {r[0]:>11.1f} {r[1]:>9.1f} {r[2]:>9.1f} "
                  f"{r[1] / r[0]:>10.2f}x {r[2] / r[0]:>10.2f}x", flush=True)


if __name__ == "__main__":
    main()
