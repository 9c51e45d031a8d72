"""Pure batch augmentation (rotnet.augment): crops, flips and rotations as functions of a batch and a generator."""

import torch

from rotnet import augment
from rotnet.augment import normalize, random_crop, random_flip, rotate, train_augment, unrotate


def images(b=6, h=8, seed=0):
    return torch.randint(0, 256, (b, 3, h, h), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_rotate_matches_rot90_per_label():
    x = images()
    k = torch.tensor([0, 1, 2, 3, 1, 3])
    out = rotate(x, k)
    for i in range(len(x)):
        assert torch.equal(out[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))


def test_unrotate_recovers_input():
    x = images()
    k = torch.randint(0, 4, (6,))
    assert torch.equal(unrotate(rotate(x, k), k), x)
    assert not torch.equal(rotate(x, torch.ones(6, dtype=torch.long)), x)


def test_augmentations_keep_shape_and_dtype():
    x = images()
    gen = torch.Generator().manual_seed(1)
    for out in (random_crop(x, 4, gen), random_flip(x, gen), train_augment(x, gen)):
        assert out.shape == x.shape and out.dtype == torch.uint8


def test_crop_stays_inside_the_padded_image():
    # An all-255 image padded with zeros: every crop is a window of the padded image, so each row and column of
    # the crop is either all padding (0) or all image (255), and at most 4 rows/columns are padding.
    x = torch.full((64, 3, 8, 8), 255, dtype=torch.uint8)
    out = random_crop(x, 4, torch.Generator().manual_seed(2))
    for img in out[:, 0]:
        rows = img.max(1).values == 255
        cols = img.max(0).values == 255
        assert rows.sum() >= 4 and cols.sum() >= 4
        assert torch.equal(img, (rows[:, None] & cols[None, :]).to(torch.uint8) * 255)
    # and with a distinct value per pixel, the crop is a contiguous window of the padded image
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).expand(16, 3, 8, 8).contiguous()
    out = random_crop(x, 2, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2,) * 4)
    for i in range(16):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_flip_is_horizontal_and_random():
    x = images(b=200)
    out = random_flip(x, torch.Generator().manual_seed(4))
    same = torch.tensor([torch.equal(a, b) for a, b in zip(out, x, strict=True)])
    flipped = torch.tensor([torch.equal(a, b.flip(2)) for a, b in zip(out, x, strict=True)])
    assert torch.all(same | flipped)
    assert 60 < flipped.sum() < 140


def test_crop_offsets_cover_every_shift_and_the_generator_decides_them():
    """Each image's crop is one of the (2p+1)^2 windows, every offset 0..2p is drawn in both axes, and another
    generator seed draws other crops (a fixed offset, or one ignoring the generator, would pass a shape test)."""
    pad, n = 4, 400
    x = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).expand(n, 3, 8, 8).contiguous()
    padded = torch.nn.functional.pad(x[:1], (pad,) * 4)[0]
    offsets = set()
    out = random_crop(x, pad, torch.Generator().manual_seed(5))
    for img in out:
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        found = [o for o in found if torch.equal(img, padded[:, o[0] : o[0] + 8, o[1] : o[1] + 8])]
        offsets.add(found[0])
    assert {dy for dy, _ in offsets} == set(range(2 * pad + 1)) == {dx for _, dx in offsets}
    assert not torch.equal(out, random_crop(x, pad, torch.Generator().manual_seed(6)))


def test_one_rotation_batch_labels_match_the_rotated_images():
    """make_batch's rotation label k is the rotation its image got: undoing k gives the augmented image back, and
    each label's images are rot90 by exactly k of the unrotated batch."""
    from rotnet.config import RunConfig
    from rotnet.loop import make_batch

    x = images(b=64, h=8)
    cfg = RunConfig(channels_last=False)
    inputs, targets = make_batch(cfg, x, torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(7))
    plain = normalize(train_augment(x, torch.Generator().manual_seed(7)))  # the same draws before the rotation
    assert set(targets.tolist()) == {0, 1, 2, 3}
    for img, k, ref in zip(inputs, targets.tolist(), plain, strict=True):
        assert torch.equal(img, torch.rot90(ref, k, dims=(1, 2)))


def test_normalization_constants_are_the_references():
    assert augment.MEAN == (0.4914, 0.4822, 0.4465)
    assert augment.STD == (0.2023, 0.1994, 0.2010)
    x = images()
    expected = (x.float() / 255 - torch.tensor(augment.MEAN).view(1, 3, 1, 1)) / torch.tensor(augment.STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(normalize(x), expected)
