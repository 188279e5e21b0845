"""Locate the first disagreement between the golden model's tensors and the hardware's.

Both sides are given as :attr:`IntegerRun.tensors`-like dicts: uint8 (C, H, W) feature maps
and int32 (C,) class sums, keyed by layer name in program order.
"""

import numpy as np

__all__ = ["first_difference", "compare_tensors"]


def _value(v):
    return v.item() if isinstance(v, np.generic) else v


def first_difference(name, expected, actual):
    """Message describing the first element where ``actual`` differs from ``expected``.

    Parameters
    ----------
    name : str
        Layer name, put at the start of the message.
    expected, actual : ndarray
        Usually uint8 (C, H, W) or int32 (C,) logits/sums; other ranks are reported by index.

    Returns
    -------
    None if the arrays are equal in shape, dtype and every value; otherwise one line naming
    the layer, the position (channel, row, column; or class for 1-D), both values and the
    number of differing elements, or the shape/dtype mismatch.
    """
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return f"{name}: shape {actual.shape}, expected {expected.shape}"
    if expected.dtype != actual.dtype:
        return f"{name}: dtype {actual.dtype}, expected {expected.dtype}"
    differ = expected != actual
    if not differ.any():
        return None
    count = int(np.count_nonzero(differ))
    flat = int(np.argmax(differ.ravel()))
    index = np.unravel_index(flat, expected.shape)
    if expected.ndim == 3:
        where = "channel {}, row {}, column {}".format(*index)
    elif expected.ndim == 1:
        where = f"class {index[0]}"
    else:
        where = f"index {tuple(int(i) for i in index)}"
    return (f"{name}: {where}: expected {_value(expected[index])}, got {_value(actual[index])} "
            f"({count} of {expected.size} values differ)")


def compare_tensors(expected, actual):
    """First difference over two name -> tensor dicts, in ``expected``'s (program) order.

    Returns
    -------
    None if ``actual`` has exactly the layers of ``expected``, all equal; otherwise the message
    of :func:`first_difference` for the first differing layer, or names the first missing or
    unexpected layer.
    """
    for name, want in expected.items():
        if name not in actual:
            return f"{name}: missing from the actual tensors"
        message = first_difference(name, want, actual[name])
        if message:
            return message
    extra = [name for name in actual if name not in expected]
    if extra:
        return f"{extra[0]}: unexpected layer, not in the expected tensors"
    return None
