"""ConvNets trained end to end on CIFAR-10 (JPEG copy): training seconds and test accuracy.

The GPU half of issue 24's acceptance ("94 % in under a minute of training"), run by
``benchmarks/gpu_check.sh`` (step ``convnet``) on the files ``gpu_check_prepare.sh`` packs::

    python benchmarks/gpu_convnet.py --pack ../shared/data/cifar10-jpeg .gpu_full/cifar10-jpeg.npz
    python benchmarks/gpu_convnet.py --data .gpu_full/cifar10-jpeg.npz --device cuda \\
        --run resnet-small:epochs=10 --run resnet-small:epochs=20

Each ``--run ARCH[:param=value,...]`` trains :class:`featbench.features.convnet.ConvNet`
on all 50,000 training images (airbench's protocol; the study trains on the training
images less its validation split) and prints its training seconds, epochs, images/s and
test accuracy with and without the test-time flip. A run is skipped when the script
has already spent ``--budget`` seconds. A first short run warms CUDA and cuDNN up
(not reported).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import featbench  # noqa: F401  (before torch: OpenMP's wait policy)


def pack(src: Path, out: Path) -> None:
    """All ``split/class/file.jpg`` files under ``src`` as one ``.npz``: the bytes
    concatenated, their offsets and their relative paths."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    blobs = [p.read_bytes() for p in files]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    names = np.array([str(p.relative_to(src)).encode() for p in files])  # bytes: 1/4 the size
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, data=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets, names=names)
    print(f"packed {len(files)} files ({offsets[-1] / 1e6:.1f} MB) into {out}")


def unpack(npz: Path, dest: Path) -> Path:
    """The packed files written back under ``dest`` (byte for byte)."""
    z = np.load(npz, allow_pickle=False)
    data, offsets = z["data"], z["offsets"]
    for i, name in enumerate(z["names"]):
        path = dest / name.decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[offsets[i]:offsets[i + 1]].tobytes())
    return dest


def parse_run(text: str) -> tuple[str, dict]:
    arch, _, rest = text.partition(":")
    params: dict = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if "/" in value:
            params[key] = tuple(int(v) for v in value.split("/"))
            continue
        for cast in (int, float):
            try:
                params[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            params[key] = {"true": True, "false": False}.get(value.lower(), value)
    return arch, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", nargs=2, metavar=("SRC", "OUT"), help="pack SRC into OUT, then exit")
    ap.add_argument("--unpack", nargs=3, metavar=("NPZ", "DEST", "N"),
                    help="write the packed files to DEST, and DEST-subset/ with the first N "
                         "files of each train/ class (N/2 of each test/ class), then exit")
    ap.add_argument("--data", help="a folder with train/ and test/, or a packed .npz")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--run", action="append", default=[],
                    help="ARCH[:param=value,...] (widths as 64/128/256); repeatable")
    ap.add_argument("--train-size", type=int, default=None, help="a seeded subset (smoke tests)")
    ap.add_argument("--test-size", type=int, default=None)
    ap.add_argument("--budget", type=float, default=240.0,
                    help="start no run after this many seconds of the script")
    args = ap.parse_args()
    if args.pack:
        pack(Path(args.pack[0]), Path(args.pack[1]))
        return
    if args.unpack:
        dest = unpack(Path(args.unpack[0]), Path(args.unpack[1]))
        n = int(args.unpack[2])
        for split, count in (("train", n), ("test", n // 2)):
            for folder in sorted((dest / split).iterdir()):
                out = Path(f"{dest}-subset") / split / folder.name
                out.mkdir(parents=True, exist_ok=True)
                for f in sorted(folder.iterdir())[:count]:
                    (out / f.name).write_bytes(f.read_bytes())
        print(f"unpacked into {dest} and {dest}-subset ({n} / {n // 2} files a class)")
        return
    t_start = time.perf_counter()
    import torch

    from featbench.datasets import load_image_folder
    from featbench.features.convnet import ConvNet

    data = Path(args.data)
    if data.suffix == ".npz":
        data = Path("/tmp/featbench-cifar10-jpeg")
        if not (data / "test").is_dir():
            unpack(Path(args.data), data)
    ds = load_image_folder(data, name="cifar10-jpeg")
    if args.train_size or args.test_size:
        ds = ds.subset(train_size=args.train_size, test_size=args.test_size, seed=0)
    t0 = time.perf_counter()
    X_train, y_train, X_test, y_test = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    print(f"data: {len(X_train)} train / {len(X_test)} test images decoded in "
          f"{time.perf_counter() - t0:.1f} s; torch {torch.__version__}, device "
          f"{torch.cuda.get_device_name(0) if args.device.startswith('cuda') else args.device}, "
          f"precision {args.precision}", flush=True)
    # warm-up: CUDA context, cuDNN autotuning (not reported)
    ConvNet("resnet-small", epochs=1, device=args.device, precision=args.precision,
            widths=(16, 32, 32)).fit(X_train[::20], y_train[::20])
    for text in args.run:
        spent = time.perf_counter() - t_start
        if spent > args.budget:
            print(f"{text}: skipped ({spent:.0f} s spent of the --budget {args.budget:.0f} s)")
            continue
        arch, params = parse_run(text)
        net = ConvNet(arch, **{"device": args.device, "precision": args.precision, **params})
        net.fit(X_train, y_train)
        t1 = time.perf_counter()
        logits = net.logits(X_test, tta=False)
        acc = float(np.mean(net.classes_[logits.argmax(1)] == y_test))
        acc_tta = float(np.mean(net.predict(X_test) == y_test)) if net.setting("tta") else None
        eval_s = time.perf_counter() - t1
        tta = f", with test-time flip {acc_tta:.4f}" if acc_tta is not None else ""
        print(f"{text}: {net.train_seconds_:.1f} s training ({net.epochs_run_} epochs, "
              f"{net.train_images_per_s_:.0f} img/s, last-epoch loss {net.train_loss_:.3f}); "
              f"test accuracy {acc:.4f}{tta} (eval {eval_s:.1f} s); recipe {net.recipe()}",
              flush=True)


if __name__ == "__main__":
    main()
