"""Batch augmentations equal torchvision's per-image transforms; alternating flips; transfer's crops, CutMix
and mixup; test-time augmentation."""

from __future__ import annotations

import pytest
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


def test_colour_jitter_equals_torchvision_brightness_contrast_saturation_per_image():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 9, 11)
    b, c, s = torch.rand(6) + 0.5, torch.rand(6) + 0.5, torch.rand(6) + 0.5
    out = augment.colour_jitter(x, b, c, s, torch.zeros(6))
    for i in range(len(x)):
        expected = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x[i], b[i].item()), c[i].item()),
                                        s[i].item())
        torch.testing.assert_close(out[i], expected, rtol=0, atol=1e-6)


def test_hue_shift_rotates_chroma_and_keeps_luma_and_greys():
    x = 0.3 + 0.4 * torch.rand(4, 3, 5, 5)  # mid-range colours: no clamping
    x[0] = 0.5  # a grey image
    ones = torch.ones(4)
    torch.testing.assert_close(augment.colour_jitter(x, ones, ones, ones, torch.zeros(4)), x, rtol=0, atol=1e-6)
    turn = torch.tensor([0.05, 0.05, -0.08, 0.1])
    out = augment.colour_jitter(x, ones, ones, ones, turn)
    torch.testing.assert_close(out[0], x[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(augment.grey(out), augment.grey(x), rtol=0, atol=1e-5)
    yiq = augment._YIQ
    before, after = (torch.einsum("ij,njhw->nihw", yiq, v) for v in (x[1:], out[1:]))
    moved = torch.atan2(after[:, 2], after[:, 1]) - torch.atan2(before[:, 2], before[:, 1])
    moved = torch.remainder(moved + torch.pi, 2 * torch.pi) - torch.pi
    torch.testing.assert_close(moved, (turn[1:] * 2 * torch.pi).view(-1, 1, 1).expand_as(moved), rtol=0, atol=1e-3)


def test_resized_crops_box_convention_matches_torchvision_crop():
    x = torch.rand(3, 3, 20, 24)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [5.0, 3.0, 13.0, 11.0], [16.0, 12.0, 24.0, 20.0]])
    out = augment.resized_crops(x, boxes, 8)  # box side = output side: every output pixel is one input pixel
    for i, (x0, y0, _, _) in enumerate(boxes.long().tolist()):
        torch.testing.assert_close(out[i], TF.crop(x[i], y0, x0, 8, 8), rtol=0, atol=1e-6)
    # a full-image box resized down is close to torchvision's antialiased resize
    full = augment.resized_crops(x, torch.tensor([[0.0, 0.0, 24.0, 20.0]] * 3), 10)
    assert (full - TF.resize(x, [10, 10], antialias=True)).abs().mean() < 0.05


def test_random_resized_boxes_stay_inside_with_the_requested_area_and_aspect():
    boxes = augment.random_resized_boxes(4000, 128, 128, generator=torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128 + 1e-4).all()
    unclipped = (w < 128 - 1e-3) & (h < 128 - 1e-3)
    area = (w * h / 128**2)[unclipped]
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 1 + 1e-4 and unclipped.float().mean() > 0.8
    aspect = (w / h)[unclipped]
    assert aspect.min() >= 3 / 4 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4


def test_contrastive_views_are_seeded_in_range_and_sometimes_grey():
    images = torch.randint(0, 256, (400, 3, 32, 32), dtype=torch.uint8)
    a = augment.contrastive_views(images, 16, torch.Generator().manual_seed(1))
    b = augment.contrastive_views(images, 16, torch.Generator().manual_seed(1))
    assert a.shape == (400, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    grey = (a.amax(1) - a.amin(1)).amax((1, 2)) < 1e-6
    assert 0.12 < grey.float().mean() < 0.28  # RandomGrayscale(0.2)


def test_random_resized_crops_are_torchvisions_per_image_draws():
    images = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    torch.manual_seed(3)
    crops = augment.random_resized_crops(images, 16, scale=0.25)
    torch.manual_seed(3)
    from torchvision.transforms import v2

    reference = v2.Compose([v2.RandomResizedCrop(16, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip()])
    assert crops.dtype == torch.uint8 and crops.shape == (5, 3, 16, 16)
    assert torch.equal(crops, torch.stack([reference(image) for image in images]))


def test_mixup_blends_the_batch_with_a_shuffled_copy():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 6, 6)
    assert augment.mix_up(x, 0.0) == (x, None, 1.0)
    mixed, order, lam = augment.mix_up(x, 0.4)
    assert 0 <= lam <= 1 and sorted(order.tolist()) == list(range(8))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[order])


def test_cut_mix_pastes_one_box_and_weighs_labels_by_its_area():
    torch.manual_seed(0)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 16, 16).contiguous()  # image i is constant i
    untouched, order, keep = augment.cut_mix(x, probability=0.0)
    assert untouched is x and order is None and keep == 1.0
    mixed, order, keep = augment.cut_mix(x, probability=1.0)
    for i in range(4):
        pasted = (mixed[i] != i).float().mean().item()  # where image i now shows image order[i]
        if order[i] != i:
            assert pasted == pytest.approx(1 - keep)
        assert set(mixed[i].unique().tolist()) <= {float(i), float(order[i])}
    assert 0 <= keep <= 1
    assert torch.equal(x, torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 16, 16))  # input not modified
