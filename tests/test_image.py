import numpy as np
import pytest
from PIL import Image

from squeezefpga.errors import ImageError
from squeezefpga.golden.image import load_image


def save(tmp_path, array, mode, name="x.png"):
    path = tmp_path / name
    picture = Image.fromarray(array)          # the mode follows from the array's dtype/shape
    assert picture.mode == mode
    picture.save(path)
    return path


def test_exact_size_is_used_as_is_and_channels_become_bgr(tmp_path, rng):
    rgb = rng.integers(0, 256, (227, 227, 3), dtype=np.uint8)
    image = load_image(save(tmp_path, rgb, "RGB"))
    assert image.shape == (3, 227, 227) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, rgb[:, :, ::-1].transpose(2, 0, 1))


def test_other_sizes_are_resized(tmp_path, rng):
    image = load_image(save(tmp_path, rng.integers(0, 256, (40, 90, 3), dtype=np.uint8), "RGB",
                            "y.jpg"))
    assert image.shape == (3, 227, 227)


def test_grayscale_becomes_three_equal_channels(tmp_path, rng):
    gray = rng.integers(0, 256, (227, 227), dtype=np.uint8)
    image = load_image(save(tmp_path, gray, "L"))
    for channel in image:
        np.testing.assert_array_equal(channel, gray)


def test_sixteen_bit_grayscale(tmp_path):
    gray = (np.arange(227 * 227, dtype=np.uint16).reshape(227, 227) % 4096) * 16
    image = load_image(save(tmp_path, gray, "I;16"))
    assert image.max() == 255 and image.min() == 0


def test_rgba_composites_over_white(tmp_path):
    rgba = np.zeros((227, 227, 4), np.uint8)
    rgba[:, :, 0] = 200                  # red, but fully transparent
    image = load_image(save(tmp_path, rgba, "RGBA"))
    assert np.all(image == 255)


@pytest.mark.parametrize("setup,message", [
    (lambda p: None, "no such image file"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("definitely not a picture\n"), "not an image"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40)), "image"),
    (lambda p: Image.new("RGB", (1, 1)).save(p, "PNG"), "1x1 pixels"),
])
def test_bad_images(tmp_path, setup, message):
    path = tmp_path / "bad.png"
    setup(path)
    with pytest.raises(ImageError, match=message):
        load_image(path)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path)
