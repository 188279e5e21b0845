"""Work of a layer program, for performance estimates of the accelerator.

The conv engine skips zero weights and computes ``lanes`` output pixels per cycle, so a conv
costs about (non-zero weights per output channel) x (output pixels) / lanes cycles.
"""

import math

import numpy as np

from squeezefpga.blob_format import OP_CONV, OP_NAMES

__all__ = ["layer_work", "ideal_cycles"]


def _check_lanes(lanes):
    if isinstance(lanes, bool) or int(lanes) != lanes or lanes < 1:
        raise ValueError(f"lanes must be a positive integer, got {lanes!r}")
    return int(lanes)


def layer_work(program, lanes):
    """Multiply-accumulates with a non-zero weight, and the ideal cycle count, per descriptor.

    Parameters
    ----------
    program : Program
    lanes : int
        Output pixels the conv engine computes per cycle.

    Returns
    -------
    list of dict, one per descriptor in program order, with keys ``name``, ``op`` ("conv",
    "maxpool" or "global_sum"), ``dense_macs`` (O*C*k*k*OH*OW; 0 for pools),
    ``nonzero_macs`` (sum over output channels of nnz(channel) * OH * OW, padding included;
    0 for pools) and ``ideal_cycles`` = nonzero_macs / lanes as a float: a lower bound that
    ignores partly filled lane groups at row and plane ends, weight fetch and pools.

    A polyphase-split conv1 has the same non-zero MACs as the stride-s conv it replaces: the
    split only adds zero weights.
    """
    lanes = _check_lanes(lanes)
    rows = []
    for d in program.descriptors:
        dense = nonzero = 0
        if d.op == OP_CONV:
            pixels = d.out_shape[1] * d.out_shape[2]
            dense = d.weights.codes.size * pixels
            nonzero = int(np.count_nonzero(d.weights.codes)) * pixels
        rows.append({"name": d.name, "op": OP_NAMES[d.op], "dense_macs": dense,
                     "nonzero_macs": nonzero, "ideal_cycles": nonzero / lanes})
    return rows


def ideal_cycles(program, lanes):
    """Total of :func:`layer_work`'s ``ideal_cycles`` (a float lower bound)."""
    return math.fsum(row["ideal_cycles"] for row in layer_work(program, lanes))
