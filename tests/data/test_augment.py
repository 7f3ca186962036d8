import pytest
import torch
import torch.nn.functional as F

from lsuite.data.augment import random_crop_flip


def reference(images, padding, fill):
    """Crop and flip one image at a time, drawing the same numbers in the same order."""
    batch, channels, height, width = images.shape
    top = torch.randint(0, 2 * padding + 1, (batch,))
    left = torch.randint(0, 2 * padding + 1, (batch,))
    flip = torch.rand(batch) < 0.5
    out = []
    for b in range(batch):
        image = torch.stack(
            [F.pad(images[b, c], (padding,) * 4, value=float(fill[c])) for c in range(channels)]
        )
        crop = image[:, top[b] : top[b] + height, left[b] : left[b] + width]
        out.append(crop.flip(-1) if flip[b] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("padding", [0, 1, 4])
@pytest.mark.parametrize("shape", [(16, 3, 32, 32), (5, 1, 6, 9)], ids=["cifar", "odd"])
def test_matches_per_image_reference(shape, padding):
    images = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    fill = torch.linspace(-2.0, 2.0, shape[1])
    torch.manual_seed(3)
    result = random_crop_flip(images, padding=padding, fill=fill)
    torch.manual_seed(3)
    expected = reference(images, padding, fill)
    assert result.shape == images.shape and result.dtype == images.dtype
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_scalar_fill_and_input_untouched():
    images = torch.ones(64, 2, 4, 4)
    before = images.clone()
    torch.manual_seed(0)
    result = random_crop_flip(images, padding=2, fill=-5.0)
    assert torch.equal(images, before)
    assert set(result.unique().tolist()) == {-5.0, 1.0}  # some crop reaches the border


def test_padding_zero_only_flips():
    images = torch.randn(32, 3, 5, 5)
    result = random_crop_flip(images, padding=0)
    for image, out in zip(images, result, strict=True):
        assert torch.equal(out, image) or torch.equal(out, image.flip(-1))


def test_uses_the_global_rng():
    images = torch.randn(8, 3, 8, 8)
    torch.manual_seed(7)
    first = random_crop_flip(images)
    second = random_crop_flip(images)
    torch.manual_seed(7)
    assert torch.equal(random_crop_flip(images), first)
    assert not torch.equal(first, second)


@pytest.mark.parametrize(
    ("shape", "padding", "message"),
    [((3, 32, 32), 4, r"expected \(B, C, H, W\)"), ((1, 3, 8, 8), -1, "padding: got -1")],
    ids=["3d", "negative-padding"],
)
def test_bad_input(shape, padding, message):
    with pytest.raises(ValueError, match=message):
        random_crop_flip(torch.zeros(shape), padding=padding)
