"""The one memory-port convention of the accelerator, and pipeline helpers.

Every large memory answers reads after a fixed latency that depends on how it is pipelined
(block RAM, its output register, a rotation network). A reader therefore never counts cycles:
it sends a *tag* with each request and gets it back with the data, in order, with ``valid``.
Writes are posted.
"""

from amaranth import Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ReadSignature", "WriteSignature", "PairReadSignature", "delay", "replicate",
           "LANES_PER_COPY", "lane_groups", "group_lanes", "ReadShare", "WriteShare"]

#: Lanes (or banks) driven by one copy of a broadcast register (a weight, an address, a
#: control): one register feeding 64 lanes' logic spans the chip and cannot close timing.
LANES_PER_COPY = 8


def ReadSignature(addr_bits, data_bits, tag_bits=1):
    """A read port seen from the reader.

    Members
    -------
    addr, en, tag : Out
        The request; ``tag`` is any bits the reader wants back with the answer.
    data, valid, rtag : In
        The answer to a request some cycles earlier (the memory's latency): ``valid`` for one
        cycle, with the request's tag in ``rtag``. Answers come in request order.
    """
    return wiring.Signature({
        "addr": Out(addr_bits), "en": Out(1), "tag": Out(tag_bits),
        "data": In(data_bits), "valid": In(1), "rtag": In(tag_bits),
    })


def WriteSignature(addr_bits, data_bits, mask_bits=1):
    """A write port seen from the writer: ``mask`` bit i enables the i-th
    ``data_bits // mask_bits``-bit lane of ``data`` (byte lanes for the wide memories)."""
    return wiring.Signature({
        "addr": Out(addr_bits), "en": Out(1), "data": Out(data_bits), "mask": Out(mask_bits),
    })


def PairReadSignature(addr_bits):
    """Two consecutive bytes of the banked activation memory, read on its banks' write port
    (from the reader's side): ``en`` with ``addr`` until ``ready``; ``valid`` with ``data``
    (byte ``addr`` low, ``addr + 1`` high) later, in order."""
    return wiring.Signature({
        "addr": Out(addr_bits), "en": Out(1), "ready": In(1),
        "data": In(16), "valid": In(1),
    })


def delay(m, value, cycles, name):
    """``value`` seen ``cycles`` clock cycles later (a chain of registers)."""
    for i in range(cycles):
        stage = Signal(len(value), name=f"{name}_d{i + 1}")
        m.d.sync += stage.eq(value)
        value = stage
    return value


def lane_groups(lanes):
    """How many copies of a broadcast register ``lanes`` lanes need, :data:`LANES_PER_COPY`
    lanes each; lane ``l`` uses copy ``l // LANES_PER_COPY``."""
    return -(-lanes // LANES_PER_COPY)


def group_lanes(group, lanes):
    """The lanes that copy ``group`` of :func:`lane_groups` drives."""
    return range(group * LANES_PER_COPY, min(lanes, (group + 1) * LANES_PER_COPY))


def replicate(m, platform, value, copies, name):
    """``copies`` registers, each ``value`` one cycle later, so that each drives a share of a
    wide fan-out (a weight broadcast to every lane, say).

    On an ECP5 they are TRELLIS_FF instances: yosys merges identical flip-flops otherwise,
    even with ``keep`` on the wires. Elsewhere (simulation) they are plain registers.
    """
    ecp5 = getattr(platform, "family", None) == "ecp5"
    out = []
    for c in range(copies):
        reg = Signal(len(value), name=f"{name}_copy{c}")
        if ecp5:
            for bit in range(len(value)):
                m.submodules[f"{name}_copy{c}_ff{bit}"] = Instance(
                    "TRELLIS_FF", p_GSR="DISABLED", p_CEMUX="1", p_CLKMUX="CLK",
                    p_LSRMUX="LSR", p_REGSET="RESET", p_SRMODE="LSR_OVER_CE",
                    i_CLK=ClockSignal(), i_DI=value[bit], i_LSR=Const(0, 1), o_Q=reg[bit])
        else:
            m.d.sync += reg.eq(value)
        out.append(reg)
    return out


class ReadShare(wiring.Component):
    """One read port shared by several readers, one at a time (``select``).

    Each request carries the index of the reader that made it, so an answer reaches that
    reader even if ``select`` has changed meanwhile.

    Parameters
    ----------
    addr_bits, data_bits : int
    tag_bits : list of int
        Tag width of each reader.
    registered : bool
        The request reaches the memory from registers, a cycle later (the readers and the
        memory may then lie far apart on the chip).

    Members
    -------
    readers : list of In(ReadSignature)
        One per reader (``readers[i]`` is the port reader i drives).
    select : In(range(len(tag_bits)))
    memory : Out(ReadSignature)
        The shared memory's port.
    """

    def __init__(self, addr_bits, data_bits, tag_bits, registered=False):
        self._registered = registered
        self._tags = list(tag_bits)
        index_bits = max(1, (len(self._tags) - 1).bit_length())
        self._index_bits = index_bits
        members = {f"reader{i}": In(ReadSignature(addr_bits, data_bits, t))
                   for i, t in enumerate(self._tags)}
        members["select"] = In(index_bits)
        members["memory"] = Out(ReadSignature(addr_bits, data_bits,
                                              max(self._tags) + index_bits))
        super().__init__(members)

    @property
    def readers(self):
        return [getattr(self, f"reader{i}") for i in range(len(self._tags))]

    def elaborate(self, platform):
        m = Module()
        width = max(self._tags)
        index = self.memory.rtag[width:]
        request = m.d.sync if self._registered else m.d.comb
        request += self.memory.en.eq(0)
        with m.Switch(self.select):
            for i, reader in enumerate(self.readers):
                with m.Case(i):
                    request += [self.memory.addr.eq(reader.addr),
                                self.memory.en.eq(reader.en),
                                self.memory.tag.eq(Cat(reader.tag, Const(0, width - len(reader.tag)),
                                                       Const(i, self._index_bits)))]
        for i, reader in enumerate(self.readers):
            m.d.comb += [reader.data.eq(self.memory.data),
                         reader.valid.eq(self.memory.valid & (index == i)),
                         reader.rtag.eq(self.memory.rtag[:len(reader.tag)])]
        return m


class WriteShare(wiring.Component):
    """One write port shared by several writers, one at a time (``select``).

    Parameters
    ----------
    addr_bits, data_bits, mask_bits : int
    count : int
        Writers.
    registered : bool
        The write reaches the memory from registers, a cycle later.

    Members
    -------
    writers : list of In(WriteSignature)
    select : In
    memory : Out(WriteSignature)
    """

    def __init__(self, addr_bits, data_bits, mask_bits, count, registered=False):
        self._count, self._registered = count, registered
        members = {f"writer{i}": In(WriteSignature(addr_bits, data_bits, mask_bits))
                   for i in range(count)}
        members["select"] = In(max(1, (count - 1).bit_length()))
        members["memory"] = Out(WriteSignature(addr_bits, data_bits, mask_bits))
        super().__init__(members)

    @property
    def writers(self):
        return [getattr(self, f"writer{i}") for i in range(self._count)]

    def elaborate(self, platform):
        m = Module()
        write = m.d.sync if self._registered else m.d.comb
        write += self.memory.en.eq(0)
        with m.Switch(self.select):
            for i, writer in enumerate(self.writers):
                with m.Case(i):
                    write += [self.memory.addr.eq(writer.addr), self.memory.en.eq(writer.en),
                              self.memory.data.eq(writer.data), self.memory.mask.eq(writer.mask)]
        return m
