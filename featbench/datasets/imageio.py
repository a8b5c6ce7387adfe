"""Read image files as 8-bit RGB arrays of a common size.

Pillow decodes; every mode is converted to 8-bit RGB explicitly: 16-bit and
32-bit integer grayscale are scaled (not clipped), palette images go through
RGBA when they carry transparency, and images with alpha are composited over a
white background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


def to_rgb8(image: Image.Image) -> np.ndarray:
    """Convert a Pillow image of any mode to an 8-bit RGB array ``(h, w, 3)``."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit (or 32-bit integer) grayscale: scale the 16-bit range to 8 bits.
        a = np.asarray(image).astype(np.float64)
        gray = np.clip(np.round(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "F":
        a = np.asarray(image, dtype=np.float64)
        scale = 255.0 if a.size and np.nanmax(a) <= 1.0 else 1.0
        gray = np.clip(np.round(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)  # over white
        return np.round(rgb).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read ``path`` as uint8 RGB (EXIF orientation applied), resized to ``size`` x ``size``
    (Pillow bilinear) when it differs.

    Raises
    ------
    DataError
        Naming the file, when it cannot be decoded.
    """
    from .source import read_file

    rgb = read_file(Path(path))
    if size is not None and rgb.shape[:2] != (size, size):
        resized = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
        rgb = np.asarray(resized, dtype=np.uint8)
    return rgb
