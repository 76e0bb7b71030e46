"""Batch augmentations equal torchvision's per-image transforms; alternating flips; test-time augmentation."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF

from dldojo.vision import augment


def test_batch_translate_equals_torchvision_crop_of_reflect_padded_image():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 10, 12)
    for pad in (1, 2, 4):
        shifts = augment.random_shifts(len(x), pad, torch.Generator().manual_seed(pad))
        out = augment.translate(x, shifts, pad)
        for i in range(len(x)):
            padded = TF.pad(x[i], [pad], padding_mode="reflect")
            expected = TF.crop(padded, pad + int(shifts[i, 0]), pad + int(shifts[i, 1]), 10, 12)
            torch.testing.assert_close(out[i], expected, rtol=0, atol=0)
    assert augment.translate(x, shifts, 0) is x


def test_every_shift_occurs_and_zero_shift_is_identity():
    shifts = augment.random_shifts(5000, 2, torch.Generator().manual_seed(1))
    assert set(map(tuple, shifts.tolist())) == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}
    x = torch.randn(3, 1, 6, 6)
    torch.testing.assert_close(augment.translate(x, torch.zeros(3, 2, dtype=torch.long), 2), x)


def test_flip_equals_torchvision_horizontal_flip():
    x = torch.randn(8, 3, 5, 7)
    mask = torch.tensor([True, False] * 4)
    out = augment.flip(x, mask)
    for i in range(8):
        torch.testing.assert_close(out[i], TF.horizontal_flip(x[i]) if mask[i] else x[i])


def test_alternating_flip_shows_each_image_both_ways_every_two_epochs():
    bits = torch.randint(0, 2, (1000,), generator=torch.Generator().manual_seed(0))
    for epoch in range(4):
        a, b = augment.alternating_flip_mask(bits, epoch), augment.alternating_flip_mask(bits, epoch + 1)
        assert torch.all(a ^ b)
        assert 0.4 < a.float().mean() < 0.6


def test_tta_levels_average_the_right_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    x = torch.randn(6, 3, 8, 8)
    model(x)
    torch.testing.assert_close(augment.predict_tta(model, x, 0), model(x))
    torch.testing.assert_close(augment.predict_tta(model, x, 1), 0.5 * (model(x) + model(x.flip(-1))))
    padded = torch.nn.functional.pad(x, (1,) * 4, mode="reflect")
    up_left, down_right = padded[..., :8, :8], padded[..., 2:, 2:]
    mirrored = lambda v: 0.5 * (model(v) + model(v.flip(-1)))  # noqa: E731
    expected = 0.5 * mirrored(x) + 0.25 * (mirrored(up_left) + mirrored(down_right))
    torch.testing.assert_close(augment.predict_tta(model, x, 2), expected)
    no_mirror = 0.5 * model(x) + 0.25 * (model(up_left) + model(down_right))
    torch.testing.assert_close(augment.predict_tta(model, x, 2, mirror=False), no_mirror)
    logits, plain = augment.predict_tta(model, x, 2, with_plain=True)
    torch.testing.assert_close(plain, model(x))
