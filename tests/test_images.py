"""One image file read as it is displayed (rotnet.images): EXIF orientation, 8-bit RGB, high-depth and float images
scaled by their range, images too small to rotate refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rotnet.errors import RotnetError
from tests.helpers import (
    every,
    images,
    load_data,
    load_folder,
    save,
)


@pytest.mark.parametrize("side", [1, 2, 3])
def test_images_too_small_to_tell_their_rotation_are_refused(tmp_path, side):
    """1-pixel images trained at chance without a word: their four rotations are one image."""
    folder = tmp_path / "dots"
    save(folder, images(8, size=side))
    with pytest.raises(RotnetError, match=f"{side}x{side}, too small to tell its rotation"):
        load_folder(folder)


@pytest.mark.parametrize(("top", "expected"), [(1.0, 255), (255.0, 255), (65535.0, 255), (0.5, 128)])
def test_a_float_image_is_scaled_by_its_range(tmp_path, top, expected):
    """A float image is scaled by the smallest of 1, 255 and 65535 that holds its brightest value."""
    folder = tmp_path / "floats"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        values = rng.uniform(0, top, (8, 8)).astype(np.float32)
        values[0, 0] = top  # the brightest value of the folder; 0.5 in a 0-1 image is half of white
        Image.fromarray(values, "F").save(folder / f"{i}.tif")
    assert int(every(load_folder(folder)).max()) == expected


def every_image(data) -> torch.Tensor:
    return torch.cat([data.train_images, data.test_images])


def test_a_phone_photo_is_decoded_as_it_is_displayed(tmp_path):
    """A JPEG whose EXIF Orientation says "rotate 90" is decoded as displayed, so its rotation labels are the
    rotations a viewer sees."""
    upright = np.zeros((8, 8, 3), dtype=np.uint8)
    upright[:2] = 255  # a white band at the top, as a viewer shows it
    stored = np.rot90(upright, k=-1)  # stored turned clockwise; tag 8 says: turn 90 degrees counter-clockwise to view
    exif = Image.Exif()
    exif[0x0112] = 8
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        upright[-1, -1] = i  # distinct images: a copy would be used once
        stored = np.rot90(upright, k=-1)
        Image.fromarray(np.ascontiguousarray(stored)).save(folder / f"{i}.png", exif=exif)
    data = load_data(folder, 8)
    pixels = every_image(data)[0].numpy().transpose(1, 2, 0)
    assert (pixels[:2] > 200).all() and (pixels[2:] < 50).all()  # the band is on top: decoded as displayed
    assert data.fingerprint["converted"] == {"exif_orientation": 4}


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped(tmp_path, mode):
    """A 0..65535 ramp (microscopy) is scaled to 0..255, not clipped."""
    ramp = np.array([[0, 21845, 43690, 65535]] * 4, dtype=np.uint16)
    folder = tmp_path / "micro"
    folder.mkdir()
    for i in range(3):
        ramp[-1, -1] = 65535 - 300 * i  # distinct images: a copy would be used once
        if mode == "I;16":
            Image.fromarray(ramp).save(folder / f"{i}.png")  # a 16-bit PNG
        else:
            Image.fromarray(ramp.astype(np.int32), "I").save(folder / f"{i}.tif")  # a 32-bit integer TIFF
    assert Image.open(next(folder.iterdir())).mode == mode  # the test really writes high-bit-depth files
    data = load_data(folder, 0)  # their own 4 x 4 pixels (no run takes a size under 8)
    assert every_image(data)[0, 0, 0].tolist() == [0, 85, 170, 255]
    assert data.fingerprint["converted"] == {"scaled_to_8_bits": 3}
