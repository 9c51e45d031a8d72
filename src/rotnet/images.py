"""One image file read as a viewer shows it: the one way rotnet decodes an image (EXIF orientation applied, 8-bit RGB,
high-depth grey scaled by its range), and what makes an image unreadable (not a regular file, a bomb, too small)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from rotnet.errors import RotnetError
from rotnet.files import open_regular

EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's list
HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # Pillow's modes of 16-bit (and 32-bit) grey images
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb limit; a larger image is refused, not decoded
MIN_SIDE = 4  # pixels: a smaller image is refused as unreadable (skipped with --skip-bad-images)


def open_as_seen(path: Path):
    """The one way rotnet reads an image file: as a viewer displays it (its EXIF orientation applied: a phone
    photo's "upright" is what its rotation labels are relative to), in 8-bit RGB (16-bit grey, e.g. microscopy, is
    scaled to 8 bits, not clipped). Returns the image and what was done to it beyond decoding."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refused like a bomb
        with open_regular(path) as f, Image.open(f) as im:  # a FIFO named x.png is refused, not waited on
            if im.getexif().get(0x0112, 1) not in (0, 1):  # 0x0112: Orientation; 1 is "as stored"
                im = ImageOps.exif_transpose(im)
                done.append("exif_orientation")
            if min(im.size) < MIN_SIDE:  # its four rotations are (nearly) one image: nothing to learn
                raise ValueError(f"it is {im.size[0]}x{im.size[1]}, too small to tell its rotation (< {MIN_SIDE} px)")
            if im.mode in HIGH_DEPTH:
                wide = np.asarray(im, dtype=np.float64)
                top = full_scale(im.mode, float(wide.max()) if wide.size else 0.0)
                im = Image.fromarray(np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8), "L")
                done.append("scaled_to_8_bits")
            im = im.convert("RGB")
    return im, done


def full_scale(mode: str, peak: float) -> float:
    """The value that is white in a high-depth grey image: 65535 for 16-bit and 32-bit integers; for floats, 1.0
    when the values lie in 0-1, 255 when they lie in 0-255 (as an 8-bit image saved as float), else 65535."""
    if mode != "F":
        return 65535.0
    return next(top for top in (1.0, 255.0, 65535.0) if peak <= top or top == 65535.0)


def decode(path: Path, size: int, resize: bool = True) -> tuple[np.ndarray, list[str]]:
    """One image as uint8 (3, size, size), as seen (`open_as_seen`): shorter side resized to size (antialiased),
    center-cropped; without resize, an image of another size is refused. Also returns what was done to it."""
    im, done = open_as_seen(path)
    if im.size != (size, size) and not resize:
        raise ValueError(f"it is {im.size[0]}x{im.size[1]}, not {size}x{size} as the first; pass --image-size N")
    if im.size != (size, size):
        from torchvision.transforms.v2 import functional as F

        im = F.center_crop(F.resize(im, size, antialias=True), size)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1), done


def first_size(files: list[Path], skip_bad: bool = False) -> int:
    """The side of the first image (the first readable one with --skip-bad-images), when it is square: the folder's
    size when --image-size is not given."""
    for path in files:
        try:
            w, h = open_as_seen(path)[0].size  # as displayed: an EXIF-rotated photo's sides swap
        except Exception as e:  # PIL raises many types; all mean the same here
            if skip_bad:
                continue  # prepare() names it among the skipped
            raise RotnetError(f"cannot read {path} ({type(e).__name__}: {e})") from None
        if w != h:
            raise RotnetError(f"{path} is {w}x{h}, not square; pass --image-size N to resize and center-crop")
        return w
    raise RotnetError(f"none of the {len(files)} images under {files[0].parent} is readable")
