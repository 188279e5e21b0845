"""Quantizer: float model -> the accelerator's fixed-point model.

Rules (docs/FORMATS.md gives the arithmetic the hardware must match):

- Activations are uint8 with one scale per tensor (real = scale * q). The input is the raw
  0..255 BGR image (scale 1); the mean subtraction is folded into conv1's bias, exactly, since
  conv1 has no padding. The two expand branches of a Fire module share one scale because they
  are concatenated. Max pooling keeps its input's scale.
- Each tensor's scale comes from calibration: the largest value seen over the calibration
  images (the bundled photos and deterministic augmentations of them), times a headroom factor,
  maps to 255.
- Weights: per layer, the non-zero float weights are divided by a weight scale and clustered
  into at most 63 values by optimal 1-D k-means (dynamic programming over the distinct
  values). With the assignment fixed, the cluster values are then re-fitted by least squares to
  the layer's *output* over the calibration set (H = E[x x^T] of the input patches), and
  rounded to int8. The weight scale is chosen among a few fractions of "largest weight -> 127"
  by the same output error. Code 0 is reserved for the value 0.
- Biases are int32 in units of (input scale x weight scale), after bias correction (the mean
  output shift caused by the weight error, E[x] from calibration, is subtracted).
- Requantisation: ``q = clamp((acc * M + 2**(S-1)) >> S, 0, 255)``, ``>>`` an arithmetic
  shift, i.e. round half up; M is a 15-bit multiplier in [2**14, 2**15), S the shift.
- An element-wise add ``a + b`` (bypass) has its own calibrated output scale. It runs as a
  1x1 conv over the two operands side by side (:func:`~.network.lower_adds`) with integer
  weights ``ka``, ``kb`` in the ratio of the operands' scales (the larger one 127) and bias
  0: ``q = clamp(((ka*a + kb*b) * M + 2**(S-1)) >> S, 0, 255)`` (:func:`quantize_add`).
"""

from dataclasses import dataclass

import numpy as np

from squeezefpga.blob_format import MAX_CODES, MAX_SHIFT, MULTIPLIER_BITS
from squeezefpga.errors import QuantizationError
from squeezefpga.progress import Stage, emit

from .float_model import float_forward
from .image import BGR_MEAN
from .network import Add, Concat, Conv, GlobalAvgPool, MaxPool
from .ops import im2col

__all__ = ["MAX_CODES", "MULTIPLIER_BITS", "QuantLayer", "QuantizedModel", "quantize",
           "calibration_images", "cluster_codebook", "requant_params", "requantize",
           "quantize_add", "prune"]

WEIGHT_MAX = 127        # int8 weights, symmetric
#: Calibration maximum is scaled by this so unseen images clip less often.
HEADROOM = 1.1


@dataclass
class QuantLayer:
    """One conv layer in fixed point.

    Members
    -------
    codebook : int8 array of at most 64 values; entry 0 is 0.
    codes : uint8 array of the weight shape, indices into ``codebook``.
    bias : int32 array, one per output channel (mean subtraction folded in for conv1).
    multiplier, shift : requantisation ``(acc * multiplier + 2**(shift-1)) >> shift``.
    """
    name: str
    codebook: np.ndarray
    codes: np.ndarray
    bias: np.ndarray
    multiplier: int
    shift: int

    @property
    def weights(self):
        """The int8 weight tensor."""
        return self.codebook[self.codes]


@dataclass
class QuantizedModel:
    """Fixed-point layers keyed by name, and the scale of every tensor (real = scale * q)."""
    network: object
    layers: dict
    scales: dict


def requantize(acc, multiplier, shift):
    """The hardware's requantisation with ReLU: int64-safe, round half up."""
    acc = np.asarray(acc, np.int64)
    return np.clip((acc * multiplier + (1 << (shift - 1))) >> shift, 0, 255).astype(np.uint8)


def requant_params(real_multiplier, layer="layer"):
    """Integer (M, S) with M / 2**S closest to ``real_multiplier`` and M in [2**14, 2**15)."""
    if not real_multiplier > 0 or not np.isfinite(real_multiplier):
        raise QuantizationError(f"{layer}: requantisation factor {real_multiplier} is not a "
                                "positive finite number")
    shift = int(np.floor(np.log2((2 ** MULTIPLIER_BITS - 1) / real_multiplier)))
    multiplier = int(round(real_multiplier * 2.0 ** shift))
    if multiplier >= 2 ** MULTIPLIER_BITS:  # rounding carried into the next power of two
        shift -= 1
        multiplier = int(round(real_multiplier * 2.0 ** shift))
    if not 1 <= shift <= MAX_SHIFT:
        raise QuantizationError(f"{layer}: requantisation factor {real_multiplier:g} needs shift "
                                f"{shift}, outside 1..{MAX_SHIFT}")
    return multiplier, shift


def cluster_codebook(values, counts, k=MAX_CODES - 1):
    """Optimal weighted 1-D k-means of ``values`` into at most ``k`` clusters.

    Returns (centroids, labels): cluster means in ascending order, and the cluster of each
    value. Clusters are contiguous runs of the sorted values; dynamic programming over the
    prefix sums finds the partition with the least weighted squared error.
    """
    values = np.asarray(values, np.float64)
    counts = np.asarray(counts, np.float64)
    order = np.argsort(values)
    v, w = values[order], counts[order]
    n = v.size
    k = min(k, n)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwv = np.concatenate([[0.0], np.cumsum(w * v)])
    cwvv = np.concatenate([[0.0], np.cumsum(w * v * v)])
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # cluster = v[i..j]
    valid = i <= j
    sw = np.where(valid, cw[j + 1] - cw[i], 1.0)
    swv = cwv[j + 1] - cwv[i]
    cost = np.where(valid, (cwvv[j + 1] - cwvv[i]) - swv * swv / sw, np.inf)
    cost = np.maximum(cost, 0.0)
    best = cost[0].copy()                 # best[j]: v[0..j] in (clusters so far)
    starts = []                           # starts[c][j]: first index of the last cluster
    for _ in range(1, k):
        total = np.concatenate([[np.inf], best[:-1]])[:, None] + cost   # split before i
        arg = np.argmin(total, axis=0)
        starts.append(arg)
        best = total[arg, np.arange(n)]
    bounds, end = [], n - 1
    for arg in reversed(starts):
        bounds.append(arg[end])
        end = arg[end] - 1
    bounds = [0] + sorted(bounds)
    sorted_labels = np.zeros(n, np.int64)
    for c, start in enumerate(bounds):
        sorted_labels[start:] = c
    centroids = np.array([np.average(v[sorted_labels == c], weights=w[sorted_labels == c])
                          for c in range(len(bounds))])
    labels = np.empty(n, np.int64)
    labels[order] = sorted_labels
    return centroids, labels


def _refine_centroids(centroids, labels_flat, mask, weights, hessian):
    """Least-squares codebook values: minimise the layer's output error over calibration.

    With the assignment of weights to clusters fixed, the output error
    ``sum_o (q_o - w_o)^T H (q_o - w_o)``, H = E[x x^T] of the layer's input patches, is
    quadratic in the centroid values: solve the K x K normal equations.
    """
    out_ch = weights.shape[0]
    k = centroids.size
    flat_w = weights.reshape(out_ch, -1).astype(np.float64)
    onehot = np.zeros((out_ch, flat_w.shape[1], k), np.float32)
    o_idx, j_idx = np.nonzero(mask.reshape(out_ch, -1))
    onehot[o_idx, j_idx, labels_flat] = 1.0
    gram = np.zeros((k, k))
    rhs = np.zeros(k)
    h32 = hessian.astype(np.float32)
    for start in range(0, out_ch, 64):   # chunks bound the memory of H @ onehot
        block = onehot[start: start + 64]                          # (o, j, k)
        h_block = np.einsum("ij,ojk->oik", h32, block, optimize=True)
        gram += np.einsum("ojk,ojl->kl", block, h_block, optimize=True)
        rhs += np.einsum("ojk,ij,oi->k", block, hessian, flat_w[start: start + 64],
                         optimize=True)
    diag = np.diag(gram).copy()
    gram += np.eye(k) * (1e-9 * diag.max() + 1e-12)
    used = diag > 0
    refined = centroids.copy()
    refined[used] = np.linalg.solve(gram[np.ix_(used, used)], rhs[used])
    return refined


def _quantize_at_scale(weights, scale, hessian):
    nonzero = weights != 0
    scaled = np.clip(weights / scale, -WEIGHT_MAX, WEIGHT_MAX)
    # Snap to a quarter of an integer step: at most ~1000 distinct values keeps the O(n^2)
    # clustering small for arbitrary float weights; the codebook is rounded to integers anyway.
    grid = np.round(scaled[nonzero] * 4) / 4
    distinct, inverse, counts = np.unique(grid, return_inverse=True, return_counts=True)
    centroids, labels = cluster_codebook(distinct, counts)
    labels_flat = labels[inverse.ravel()]
    if hessian is not None:
        centroids = _refine_centroids(centroids, labels_flat, nonzero, scaled, hessian)
    # Keep every non-zero weight non-zero: a centroid that rounds to 0 becomes +-1.
    ints = np.clip(np.round(centroids), -WEIGHT_MAX, WEIGHT_MAX)
    ints = np.where(ints == 0, np.where(centroids < 0, -1, 1), ints).astype(np.int64)
    values = np.unique(ints)
    codebook = np.concatenate([[0], values]).astype(np.int8)
    codes = np.zeros(weights.shape, np.uint8)
    codes[nonzero] = (np.searchsorted(values, ints) + 1)[labels_flat]
    return codebook, codes


#: Weight scales tried, as fractions of "largest weight -> 127"; smaller ones clip the few
#: largest weights but resolve the many small ones better.
SCALE_FRACTIONS = (1.0, 0.8, 0.6, 0.45, 0.35)


def quantize_weights(weights, name="layer", hessian=None):
    """Float weights -> (codebook int8, codes uint8, weight scale).

    ``hessian`` (E[x x^T] of the layer's input patches, optional) turns on the least-squares
    refinement of the codebook values (see :func:`_refine_centroids`) and the choice of the
    weight scale that minimises the output error ``sum_o (q_o - w_o)^T H (q_o - w_o)``.
    """
    top = float(np.abs(weights).max())
    if top == 0:
        return np.zeros(1, np.int8), np.zeros(weights.shape, np.uint8), 1.0
    best = None
    for fraction in SCALE_FRACTIONS if hessian is not None else (1.0,):
        scale = fraction * top / WEIGHT_MAX
        codebook, codes = _quantize_at_scale(weights, scale, hessian)
        if hessian is None:
            best = (0.0, codebook, codes, scale)
            break
        diff = (codebook[codes] * scale - weights).reshape(weights.shape[0], -1)
        error = float(np.sum((diff @ hessian) * diff))
        if best is None or error < best[0]:
            best = (error, codebook, codes, scale)
    _, codebook, codes, scale = best
    if codebook.size > MAX_CODES:
        raise QuantizationError(f"{name}: {codebook.size} codebook entries > {MAX_CODES}")
    return codebook, codes, scale


def prune(model, density):
    """Deep Compression's first step: keep the ``density`` fraction (0, 1] of each conv's
    weights with the largest magnitude, zero the rest. Returns a new FloatModel."""
    from .importer import FloatModel
    if not 0 < density <= 1:
        raise QuantizationError(f"density must be in (0, 1], not {density}")
    weights = {}
    for name, w in model.weights.items():
        keep = max(1, int(round(density * w.size)))
        if keep >= w.size:
            weights[name] = w
            continue
        threshold = np.partition(np.abs(w).ravel(), w.size - keep)[w.size - keep]
        weights[name] = np.where(np.abs(w) >= threshold, w, 0).astype(w.dtype)
    return FloatModel(model.network, weights, model.biases, model.stats)


def calibration_images(images):
    """The given uint8 BGR images plus deterministic augmentations of each.

    Augmentations: horizontal flip, a centre crop zoomed to full size (nearest neighbour),
    and brightness x0.75 / x1.25; they widen the activation ranges seen in calibration.
    """
    out = []
    for image in images:
        _, h, w = image.shape
        ys = np.arange(h) * 3 // 4 + h // 8
        xs = np.arange(w) * 3 // 4 + w // 8
        out += [image, image[:, :, ::-1], image[:, ys][:, :, xs],
                np.clip(image * 0.75, 0, 255).astype(np.uint8),
                np.clip(image * 1.25, 0, 255).astype(np.uint8)]
    return [np.ascontiguousarray(x) for x in out]


@dataclass
class _InputStats:
    """Second and first moments of one conv layer's input patches (rows of im2col)."""
    hessian: np.ndarray
    mean: np.ndarray
    count: int = 0


def _calibrate(model, images, progress=None):
    """Peak of every tensor, and input-patch moments of every conv layer."""
    peaks, stats = {}, {}
    for index, image in enumerate(images):
        tensors = float_forward(model, image)
        for name, tensor in tensors.items():
            peaks[name] = max(peaks.get(name, 0.0), float(tensor.max()))
        for op in model.network.convs:
            cols, _ = im2col(tensors[op.src].astype(np.float64), op.kernel, op.stride, op.pad)
            if op.name not in stats:
                stats[op.name] = _InputStats(np.zeros((cols.shape[0],) * 2),
                                             np.zeros(cols.shape[0]))
            st = stats[op.name]
            st.hessian += cols @ cols.T
            st.mean += cols.sum(axis=1)
            st.count += cols.shape[1]
        emit(progress, Stage.COMPILE, "calibrating", index + 1, len(images), "images")
    for st in stats.values():
        st.hessian /= st.count
        st.mean /= st.count
    return peaks, stats


def quantize(model, images, progress=None, headroom=HEADROOM):
    """Quantize a :class:`~.importer.FloatModel` using calibration ``images``.

    Parameters
    ----------
    model : FloatModel
    images : list of uint8 BGR (3, H, W) arrays
        Calibration images (see :func:`calibration_images`).
    progress : callable, optional
        Receives :class:`squeezefpga.progress.Event` objects (stage ``COMPILE``).
    """
    network = model.network
    peaks, stats = _calibrate(model, images, progress)
    scales = {"data": 1.0}

    def tensor_scale(name):
        peak = peaks[name] * headroom
        return peak / 255.0 if peak > 0 else 1.0 / 255.0

    for op in network.ops:
        if isinstance(op, Concat):
            shared = max(tensor_scale(s) for s in op.srcs)
            for s in op.srcs + (op.name,):
                scales[s] = shared
    for op in network.ops:
        if isinstance(op, (Conv, Add)) and op.name not in scales:
            scales[op.name] = tensor_scale(op.name)
        elif isinstance(op, (MaxPool, GlobalAvgPool)):
            scales[op.name] = scales[op.src]
    mean = np.asarray(BGR_MEAN, np.int64)
    layers = {}
    for op in network.convs:
        weights = model.weights[op.name]
        codebook, codes, weight_scale = quantize_weights(weights, op.name,
                                                         stats[op.name].hessian)
        # Bias correction: cancel the mean output shift the weight error causes.
        error = (codebook[codes] * weight_scale - weights).reshape(op.out_ch, -1)
        float_bias = model.biases[op.name].astype(np.float64) - error @ stats[op.name].mean
        in_scale = scales[op.src]
        bias = np.round(float_bias / (in_scale * weight_scale))
        if op.src == "data":
            if op.pad:
                raise QuantizationError(f"{op.name}: the mean can only be folded into an "
                                        "unpadded first layer")
            # conv(x - mean) = conv(x) - sum(w * mean): exact, the mean being integer.
            bias -= (codebook[codes].astype(np.int64) * mean[None, :, None, None]).sum(
                axis=(1, 2, 3))
        if np.abs(bias).max() >= 2 ** 31:
            raise QuantizationError(f"{op.name}: a bias does not fit int32")
        multiplier, shift = requant_params(in_scale * weight_scale / scales[op.name], op.name)
        layers[op.name] = QuantLayer(op.name, codebook, codes, bias.astype(np.int32),
                                     multiplier, shift)
    shapes = network.shapes()
    for op in network.ops:
        if isinstance(op, Add):
            layers[op.name] = quantize_add(op.name, shapes[op.name][0],
                                           [scales[s] for s in op.srcs], scales[op.name])
    return QuantizedModel(network, layers, scales)


def quantize_add(name, channels, in_scales, out_scale):
    """The fixed-point add of two uint8 tensors at scales ``in_scales`` into ``out_scale``.

    Returns a :class:`QuantLayer` of the 1x1 conv (``channels`` outputs, ``2 * channels``
    inputs: the operands side by side) that the accelerator runs for it: filter c weighs
    channel c by ``ka`` and channel ``channels + c`` by ``kb``, integers in the ratio of the
    scales with the larger 127, bias 0, so the sum is exact before the one rounding of the
    requantisation.
    """
    top = max(in_scales)
    weights = [max(1, int(round(WEIGHT_MAX * s / top))) for s in in_scales]
    values = sorted(set(weights))
    codebook = np.array([0] + values, np.int8)
    codes = np.zeros((channels, 2 * channels, 1, 1), np.uint8)
    lanes = np.arange(channels)
    for operand, weight in enumerate(weights):
        codes[lanes, operand * channels + lanes] = values.index(weight) + 1
    multiplier, shift = requant_params(top / WEIGHT_MAX / out_scale, name)
    return QuantLayer(name, codebook, codes, np.zeros(channels, np.int32), multiplier, shift)
