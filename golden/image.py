"""Image input: any picture Pillow reads becomes the network's uint8 BGR (3, H, W) tensor.

Rule: the whole picture is resized (aspect ratio not kept, as the Caffe model was evaluated)
to the network's input size with Pillow's bilinear filter (which low-pass filters when it
shrinks); a picture already of that size is used as it is. Grayscale, palette and 16-bit
pictures are converted to RGB; transparent pixels are composited over white.
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from squeezefpga.errors import ImageError

__all__ = ["BGR_MEAN", "MIN_SIDE", "load_image", "prepare_image"]

#: Per-channel mean (B, G, R) that the Caffe model subtracts from 0..255 pixels.
BGR_MEAN = (104, 117, 123)
#: Smaller pictures hold too little to be scaled up to a network input meaningfully.
MIN_SIDE = 16


def load_image(path, size=227):
    """Read the picture at ``path`` and return it as a uint8 BGR (3, size, size) array."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such image file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as picture:
                picture.load()
                return prepare_image(picture, size, source=str(path))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image Pillow can read (PNG, JPEG, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or unreadable image: {exc}") from None


def prepare_image(picture, size=227, source="image"):
    """Convert a Pillow image to the network's uint8 BGR (3, size, size) input."""
    width, height = picture.size
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{source}: image is {width}x{height} pixels; each side must be at "
                         f"least {MIN_SIDE}")
    if picture.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(picture, dtype=np.float64)
        top = values.max()
        values = values * (255.0 / top) if top > 0 else values
        picture = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        picture = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)),
                                        rgba)
    picture = picture.convert("RGB")
    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.Resampling.BILINEAR)
    rgb = np.asarray(picture, dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))
