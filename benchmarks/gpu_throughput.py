"""CNN extraction images/s: featbench from JPEG files vs a plain loop on decoded images.

``featbench``: ``extract_features`` over an image folder (listing, decoding in
DataLoader workers into pinned memory on CUDA, the CNN, the sharded store), timed
end to end. ``plain``: the same images decoded beforehand into one tensor on the
device, then ``for batch: model(normalize(resize(batch)))`` under the same
autocast precision. Both at each ``--sizes`` resolution, same run, same weights.

    python benchmarks/gpu_throughput.py --data .gpu_data/cifar --device cuda --sizes 112,224
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


def plain(net, x_all, mean, std, size, batch_size, device, precision) -> None:
    """``for batch: model(normalize(resize(batch)))`` over images already on the device."""
    from featbench.runtime import autocast

    with torch.inference_mode(), autocast(device, precision):
        for s in range(0, len(x_all), batch_size):
            b = x_all[s:s + batch_size].permute(0, 3, 1, 2).float() / 255
            b = F.interpolate(b, size=(size, size), mode="bilinear", align_corners=False)
            net(((b - mean) / std).contiguous(memory_format=torch.channels_last))
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="an image folder (train/ + test/)")
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default="112,224")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()

    from featbench import load_dataset
    from featbench.extraction import extract_features
    from featbench.features.cnn import CNNEmbedding
    from featbench.params import parse_value
    from featbench.runtime import check_device, resolve_precision
    from featbench.store import FeatureStore

    device = check_device(args.device)
    ds = load_dataset(f"folder:{args.data}")
    n = sum(len(s) for s in ds.splits().values())
    X = np.concatenate([s.load() for s in ds.splits().values()])  # decoded once, for plain
    weights = parse_value(args.weights)
    print(f"{n} images from {args.data} ({X.shape[1]}x{X.shape[2]} px JPEG), cnn:{args.model}, "
          f"weights={weights}, device {device}, batch {args.batch_size}")
    for size in map(int, args.sizes.split(",")):
        params = {f"cnn:{args.model}": {"weights": weights, "size": size, "device": str(device),
                                        "batch_size": args.batch_size}}
        # warm-up (model load, cudnn autotune) on a few images, then the timed runs
        est = CNNEmbedding(args.model, weights=weights, size=size, device=str(device),
                           batch_size=args.batch_size)
        est.fit(X[:1])
        est.transform(X[: args.batch_size])
        precision = resolve_precision(est.precision, device)
        loaded, net, _ = est._network()
        x_all = torch.from_numpy(X).to(device)
        mean = torch.tensor(loaded.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(loaded.std, device=device).view(1, 3, 1, 1)

        args_plain = (net, x_all, mean, std, size, args.batch_size, device, precision)
        plain(*args_plain)  # warm-up at this size
        t0 = time.perf_counter()
        plain(*args_plain)
        plain_ips = n / (time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            extract_features(f"cnn:{args.model}", ds, params, FeatureStore(tmp), load=False)
            fb_ips = n / (time.perf_counter() - t0)
        print(f"size {size:>4}: plain {plain_ips:9.1f} img/s (decoded tensor on {device.type}) | "
              f"featbench {fb_ips:9.1f} img/s (from JPEG files, store included) | "
              f"featbench / plain = {fb_ips / plain_ips:.2f} "
              f"({'meets' if fb_ips >= 0.8 * plain_ips else 'MISSES'} the 0.80 goal) | "
              f"precision {precision}")


if __name__ == "__main__":
    main()
