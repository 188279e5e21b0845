"""Vendored data: the Deep Compression SqueezeNet v1.0, ImageNet class names, two CC0 photos."""

from pathlib import Path

__all__ = ["DATA_DIR", "DEFAULT_MODEL", "CAT_PHOTO", "COFFEE_PHOTO", "class_names"]

DATA_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = DATA_DIR / "compressed_SqueezeNet.net"
CAT_PHOTO = DATA_DIR / "chelsea.png"
COFFEE_PHOTO = DATA_DIR / "coffee.png"


def class_names():
    """The 1000 ImageNet class names; index N is class N."""
    return (DATA_DIR / "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
