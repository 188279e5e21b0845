import numpy as np
import pytest

from squeezefpga.golden.compare import compare_tensors, first_difference


@pytest.fixture
def tensors(rng):
    return {"conv1": rng.integers(0, 256, (4, 5, 6), dtype=np.uint8),
            "pool1": rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),
            "pool10": rng.integers(-1000, 1000, 10).astype(np.int32)}


def copy(tensors):
    return {name: t.copy() for name, t in tensors.items()}


def test_equal_tensors(tensors):
    assert first_difference("conv1", tensors["conv1"], tensors["conv1"].copy()) is None
    assert compare_tensors(tensors, copy(tensors)) is None


def test_first_difference_names_channel_row_column(tensors):
    actual = tensors["conv1"].copy()
    actual[2, 3, 4] ^= 0xFF
    actual[3, 0, 0] ^= 1                       # later in CHW order: not the first
    expected = tensors["conv1"]
    message = first_difference("conv1", expected, actual)
    assert message == (f"conv1: channel 2, row 3, column 4: expected {expected[2, 3, 4]}, "
                       f"got {actual[2, 3, 4]} (2 of 120 values differ)")


def test_first_difference_names_class(tensors):
    actual = tensors["pool10"].copy()
    actual[7] += 1
    assert first_difference("pool10", tensors["pool10"], actual) == (
        f"pool10: class 7: expected {tensors['pool10'][7]}, got {actual[7]} "
        "(1 of 10 values differ)")


def test_shape_and_dtype_mismatch(tensors):
    x = tensors["conv1"]
    assert first_difference("conv1", x, x[:, :4]) == "conv1: shape (4, 4, 6), expected (4, 5, 6)"
    assert first_difference("conv1", x, x.astype(np.int32)) == (
        "conv1: dtype int32, expected uint8")


def test_compare_tensors_reports_the_first_layer_in_program_order(tensors):
    actual = copy(tensors)
    actual["pool10"][0] += 5
    actual["pool1"][1, 2, 0] += 1
    assert compare_tensors(tensors, actual).startswith("pool1: channel 1, row 2, column 0:")
    actual = copy(tensors)
    del actual["pool1"]
    assert compare_tensors(tensors, actual) == "pool1: missing from the actual tensors"
    actual = dict(copy(tensors), extra=np.zeros(1, np.int32))
    assert compare_tensors(tensors, actual).startswith("extra: unexpected layer")


def test_compare_a_real_run_with_a_planted_fault(compiled, photos):
    from squeezefpga.golden.integer_model import run_integer
    run = run_integer(compiled.program, photos["cat"])
    actual = copy(run.tensors)
    actual["fire5/expand3x3"][17, 5, 9] += 1
    actual["conv10"][0, 0, 0] += 1
    message = compare_tensors(run.tensors, actual)
    assert message.startswith("fire5/expand3x3: channel 17, row 5, column 9:")
