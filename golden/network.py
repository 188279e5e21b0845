"""Network definitions: SqueezeNet v1.0 (Caffe, as the real compressed model needs it), v1.1,
v1.0 with simple and with complex bypass, and small synthetic networks for hardware tests.

A network is a list of operations in execution order. Every operation reads named tensors and
writes one named tensor; ``"data"`` is the input image. The same description drives the float
reference, the quantizer and the compiler, so the three can never disagree on the topology.
"""

from dataclasses import dataclass, field

__all__ = [
    "Conv", "MaxPool", "Concat", "Add", "GlobalAvgPool", "Network",
    "squeezenet_v1_0", "squeezenet_v1_1", "squeezenet_v1_0_bypass",
    "squeezenet_v1_0_complex_bypass", "squeezenet_torchvision", "tiny_squeezenet", "FIRE_SIZES", "NETWORKS", "network",
    "add_operands", "lower_adds",
]


@dataclass(frozen=True)
class Conv:
    """2-D convolution with bias, followed by ReLU (every convolution of SqueezeNet has one)."""
    name: str
    src: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    pad: int = 0

    @property
    def weight_shape(self):
        return (self.out_ch, self.in_ch, self.kernel, self.kernel)

    @property
    def inputs(self):
        return (self.src,)


@dataclass(frozen=True)
class MaxPool:
    """Max pooling with Caffe's ceil-mode output size (no padding)."""
    name: str
    src: str
    kernel: int = 3
    stride: int = 2

    @property
    def inputs(self):
        return (self.src,)


@dataclass(frozen=True)
class Concat:
    """Channel concatenation (the two expand branches of a Fire module)."""
    name: str
    srcs: tuple

    @property
    def inputs(self):
        return self.srcs


@dataclass(frozen=True)
class Add:
    """Element-wise sum of two tensors of one shape (simple and complex bypass)."""
    name: str
    srcs: tuple

    @property
    def inputs(self):
        return self.srcs


@dataclass(frozen=True)
class GlobalAvgPool:
    """Average over all spatial positions: the class scores."""
    name: str
    src: str

    @property
    def inputs(self):
        return (self.src,)


def out_size(size, kernel, stride, pad, ceil_mode=False):
    """Output side length of a convolution (floor) or Caffe pooling (ceil) window."""
    span = size + 2 * pad - kernel
    if span < 0:
        raise ValueError(f"window {kernel} does not fit an input of {size} (pad {pad})")
    return (-(-span // stride) if ceil_mode else span // stride) + 1


@dataclass(frozen=True)
class Network:
    """A named sequence of operations over an input of ``input_shape`` = (C, H, W)."""
    name: str
    input_shape: tuple
    ops: tuple
    output: str = field(default="")

    def __post_init__(self):
        if not self.output:
            object.__setattr__(self, "output", self.ops[-1].name)

    @property
    def convs(self):
        return [op for op in self.ops if isinstance(op, Conv)]

    def op(self, name):
        for op in self.ops:
            if op.name == name:
                return op
        raise KeyError(name)

    def shapes(self):
        """Shape (C, H, W) of every tensor, keyed by name; checks channel counts on the way."""
        shapes = {"data": tuple(self.input_shape)}
        for op in self.ops:
            ins = [shapes[s] for s in op.inputs]
            if isinstance(op, Conv):
                (c, h, w), = ins
                if c != op.in_ch:
                    raise ValueError(f"{op.name}: expects {op.in_ch} input channels, "
                                     f"{op.src} has {c}")
                shapes[op.name] = (op.out_ch, out_size(h, op.kernel, op.stride, op.pad),
                                   out_size(w, op.kernel, op.stride, op.pad))
            elif isinstance(op, MaxPool):
                (c, h, w), = ins
                shapes[op.name] = (c, out_size(h, op.kernel, op.stride, 0, ceil_mode=True),
                                   out_size(w, op.kernel, op.stride, 0, ceil_mode=True))
            elif isinstance(op, Concat):
                if len({s[1:] for s in ins}) != 1:
                    raise ValueError(f"{op.name}: inputs differ in spatial size: {ins}")
                shapes[op.name] = (sum(s[0] for s in ins),) + ins[0][1:]
            elif isinstance(op, Add):
                if len(set(ins)) != 1:
                    raise ValueError(f"{op.name}: inputs differ in shape: {ins}")
                shapes[op.name] = ins[0]
            elif isinstance(op, GlobalAvgPool):
                (c, h, w), = ins
                shapes[op.name] = (c, 1, 1)
            else:
                raise TypeError(f"unknown operation {op!r}")
        return shapes

    def macs(self):
        """Dense multiply-accumulates of one inference, per convolution."""
        shapes = self.shapes()
        return {op.name: op.out_ch * op.in_ch * op.kernel ** 2 * shapes[op.name][1] *
                shapes[op.name][2] for op in self.convs}


# (squeeze, expand) channels of fire2 ... fire9; identical in v1.0 and v1.1.
FIRE_SIZES = ((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256),
              (64, 256))


def _fire(ops, index, src, in_ch, squeeze, expand):
    name = f"fire{index}"
    ops += [
        Conv(f"{name}/squeeze1x1", src, in_ch, squeeze, 1),
        Conv(f"{name}/expand1x1", f"{name}/squeeze1x1", squeeze, expand, 1),
        Conv(f"{name}/expand3x3", f"{name}/squeeze1x1", squeeze, expand, 3, pad=1),
        Concat(f"{name}/concat", (f"{name}/expand1x1", f"{name}/expand3x3")),
    ]
    return f"{name}/concat", 2 * expand


def _squeezenet(name, conv1, pool_after, bypass=(), complex_bypass=(), conv10_pad=0,
                classes=1000, input_shape=(3, 227, 227), fire_sizes=FIRE_SIZES):
    ops = [conv1, MaxPool("pool1", "conv1")]
    src, ch = "pool1", conv1.out_ch
    for index, (squeeze, expand) in enumerate(fire_sizes, start=2):
        block_in, block_ch = src, ch
        src, ch = _fire(ops, index, src, ch, squeeze, expand)
        if index in bypass and index in complex_bypass:
            raise ValueError(f"fire{index}: simple or complex bypass, not both")
        if index in bypass:
            if block_ch != ch:
                raise ValueError(f"bypass around fire{index} needs equal channel counts")
            ops.append(Add(f"fire{index}/bypass", (block_in, src)))
            src = f"fire{index}/bypass"
        elif index in complex_bypass:
            # The paper's complex bypass: a 1x1 conv (with ReLU, as every conv here: the
            # accelerator's tensors are uint8) brings the block input to the output's channels.
            ops.append(Conv(f"fire{index}/bypass1x1", block_in, block_ch, ch, 1))
            ops.append(Add(f"fire{index}/bypass", (f"fire{index}/bypass1x1", src)))
            src = f"fire{index}/bypass"
        if index in pool_after:
            ops.append(MaxPool(f"pool{index}", src))
            src = f"pool{index}"
    ops.append(Conv("conv10", src, ch, classes, 1, pad=conv10_pad))
    ops.append(GlobalAvgPool("pool10", "conv10"))
    return Network(name, input_shape, tuple(ops))


def squeezenet_v1_0():
    """SqueezeNet v1.0 exactly as the Caffe model of Deep Compression defines it.

    conv1 is 96 filters 7x7 stride 2; pools after conv1, fire4 and fire8 are ceil mode; conv10
    is declared with pad 1, so its output is 15x15 with relu(bias) on the border.
    """
    return _squeezenet("squeezenet_v1.0", Conv("conv1", "data", 3, 96, 7, stride=2),
                       pool_after=(4, 8), conv10_pad=1)


def squeezenet_v1_0_bypass():
    """SqueezeNet v1.0 with simple bypass around fire3, fire5, fire7 and fire9."""
    return _squeezenet("squeezenet_v1.0_bypass", Conv("conv1", "data", 3, 96, 7, stride=2),
                       pool_after=(4, 8), bypass=(3, 5, 7, 9), conv10_pad=1)


def squeezenet_v1_0_complex_bypass():
    """SqueezeNet v1.0 with complex bypass: simple bypass around fire3, 5, 7 and 9, and a 1x1
    conv on the bypass of fire2, 4, 6 and 8, whose channel counts differ (the paper's Fig. 2,
    right)."""
    return _squeezenet("squeezenet_v1.0_complex_bypass",
                       Conv("conv1", "data", 3, 96, 7, stride=2), pool_after=(4, 8),
                       bypass=(3, 5, 7, 9), complex_bypass=(2, 4, 6, 8), conv10_pad=1)


def squeezenet_v1_1():
    """SqueezeNet v1.1: conv1 64 filters 3x3 stride 2, pools after conv1, fire3 and fire5.

    As torchvision's ``squeezenet1_1`` and the Caffe release: conv1 unpadded, pools ceil mode,
    conv10 1x1 unpadded (so no border, unlike the Caffe v1.0). The input is 227x227 here (the
    Caffe size; torchvision's 224 gives 111x111 after conv1, the same layers).
    """
    return _squeezenet("squeezenet_v1.1", Conv("conv1", "data", 3, 64, 3, stride=2),
                       pool_after=(3, 5))


def squeezenet_torchvision(version):
    """torchvision's ``squeezenet1_0`` (``version`` "1_0") or ``squeezenet1_1`` ("1_1").

    Against the Caffe definitions above: the input is 224x224, and conv10 is unpadded in both
    (the Caffe v1.0 pads it by 1, so its scores average a 15x15 map with a relu(bias) border;
    torchvision's a 13x13 map). conv1, the Fire modules and the ceil-mode pools are the same.
    """
    if version not in ("1_0", "1_1"):
        raise ValueError(f"torchvision has squeezenet1_0 and squeezenet1_1, not {version!r}")
    conv1 = (Conv("conv1", "data", 3, 96, 7, stride=2) if version == "1_0" else
             Conv("conv1", "data", 3, 64, 3, stride=2))
    return _squeezenet(f"squeezenet{version}", conv1,
                       pool_after=(4, 8) if version == "1_0" else (3, 5),
                       input_shape=(3, 224, 224))


def tiny_squeezenet(size=35, classes=10, conv1_kernel=3, fires=((4, 8), (4, 8), (8, 16)),
                    bypass=(), complex_bypass=()):
    """A reduced SqueezeNet of the same shape family, fast enough for RTL simulation.

    Parameters
    ----------
    size : int
        Input side length (3 x size x size).
    classes : int
        Output channels of conv10.
    conv1_kernel : int
        Side of conv1's kernel (stride 2, no padding; 7 mirrors v1.0, 3 mirrors v1.1).
    fires : tuple of (squeeze, expand)
        Fire modules; a pool follows the second one.
    bypass, complex_bypass : tuple of int
        Fire indices (from 2) with a simple bypass, or with a 1x1 conv on the bypass.
    """
    if size < conv1_kernel + 4:
        raise ValueError(f"size {size} is too small for a {conv1_kernel}x{conv1_kernel} conv1")
    return _squeezenet(f"tiny_squeezenet_{size}",
                       Conv("conv1", "data", 3, 2 * fires[0][0], conv1_kernel, stride=2),
                       pool_after=(3,), bypass=bypass, complex_bypass=complex_bypass,
                       conv10_pad=1, classes=classes, input_shape=(3, size, size),
                       fire_sizes=fires)


#: The networks of ``--network``, by name.
NETWORKS = {"v1.0": squeezenet_v1_0, "v1.1": squeezenet_v1_1,
            "v1.0-bypass": squeezenet_v1_0_bypass,
            "v1.0-complex-bypass": squeezenet_v1_0_complex_bypass}


def network(name):
    """The network called ``name`` in :data:`NETWORKS`."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r} (one of {', '.join(NETWORKS)})")
    return NETWORKS[name]()


def add_operands(add):
    """Name of the region that holds both operands of ``add`` side by side (see
    :func:`lower_adds`)."""
    return f"{add.name}/operands"


def lower_adds(network):
    """``network`` with every :class:`Add` as the accelerator runs it.

    ``Add(name, (a, b))`` becomes ``Concat(name/operands, (a, b))``, so the compiler lays the
    two operands side by side, and a 1x1 ``Conv(name)`` of 2C -> C channels whose filter c
    has exactly two non-zero weights, on channels c and C + c (the quantizer gives them the
    ratio of the operands' scales). The conv engine skips the zeros: an add costs no new
    hardware, and its rounding is the requantisation of every conv (docs/FORMATS.md).
    """
    shapes = network.shapes()
    ops = []
    for op in network.ops:
        if isinstance(op, Add):
            if len(op.srcs) != 2:
                raise ValueError(f"{op.name}: adds exactly two tensors, not {len(op.srcs)}")
            channels = shapes[op.name][0]
            ops.append(Concat(add_operands(op), tuple(op.srcs)))
            ops.append(Conv(op.name, add_operands(op), 2 * channels, channels, 1))
        else:
            ops.append(op)
    return Network(network.name, network.input_shape, tuple(ops), network.output)
