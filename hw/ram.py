"""Simple dual-port RAM for the large on-chip buffers.

In Amaranth's simulator it is a :class:`amaranth.lib.memory.Memory`. In emitted Verilog it is
an instance of the small behavioural module :data:`RAM_VERILOG`, which yosys maps to block RAM
and Verilator simulates natively: emitting a megabyte-sized ``Memory`` makes Amaranth write
one initialiser per word (60 MB of Verilog and minutes of conversion for the default
configuration), although nothing needs these buffers initialised — the host writes
everything the layer program reads.
"""

from amaranth import Cat, ClockSignal, Instance, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .ports import ReadSignature, WriteSignature, delay

__all__ = ["Ram", "Buffer", "RAM_VERILOG", "VerilogTarget"]

RAM_VERILOG = """\
// Dual-port RAM: a read port, and a port that writes (byte lanes) or reads, both registered
// and enabled (squeezefpga hw/ram.py).
module sqz_ram #(parameter WIDTH = 8, DEPTH = 1024, ABITS = 10, LANES = 1) (
    input clk,
    input [ABITS-1:0] raddr,
    input ren,
    output reg [WIDTH-1:0] rdata,
    input [ABITS-1:0] waddr,
    input [LANES-1:0] wen,
    input [WIDTH-1:0] wdata,
    input ren_b,
    output reg [WIDTH-1:0] rdata_b
);
    localparam GRAN = WIDTH / LANES;
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    always @(posedge clk)
        if (ren)
            rdata <= mem[raddr];
    always @(posedge clk)
        if (ren_b)
            rdata_b <= mem[waddr];
    genvar i;
    generate
        for (i = 0; i < LANES; i = i + 1) begin : lane
            always @(posedge clk)
                if (wen[i])
                    mem[waddr][i*GRAN +: GRAN] <= wdata[i*GRAN +: GRAN];
        end
    endgenerate
endmodule
"""


class VerilogTarget:
    """Platform marker for :func:`squeezefpga.hw.verilog.emit_verilog`: RAMs become
    ``sqz_ram`` instances."""
    ram_blackbox = True


class Ram(wiring.Component):
    """``depth`` words of ``width`` bits; one read port (data the cycle after ``read_en``,
    held otherwise; a read of the word being written returns the old value) and one write
    port with ``width // granularity`` lane enables, which reads ``write_addr`` instead on a
    cycle it does not write (``read_b_en``): the two ports of a block RAM.

    Members
    -------
    read_addr, read_en : In; read_data : Out(width)
    write_addr, write_data : In; write_en : In(width // granularity)
    read_b_en : In(1); read_b_data : Out(width)
        (Built only with ``second_read``; the Verilog module always has them.)
    """

    def __init__(self, width, depth, granularity=None, second_read=False):
        self.second_read = second_read
        granularity = granularity or width
        if width % granularity:
            raise ValueError(f"width {width} is not a multiple of granularity {granularity}")
        if depth < 1:
            raise ValueError(f"depth must be positive, not {depth}")
        self.width, self.depth, self.granularity = width, depth, granularity
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "read_addr": In(abits), "read_en": In(1), "read_data": Out(width),
            "write_addr": In(abits), "write_data": In(width),
            "write_en": In(width // granularity),
            "read_b_en": In(1), "read_b_data": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        if getattr(platform, "ram_blackbox", False):
            m.submodules.ram = Instance(
                "sqz_ram", p_WIDTH=self.width, p_DEPTH=self.depth,
                p_ABITS=len(self.read_addr), p_LANES=len(self.write_en),
                i_clk=ClockSignal(),
                i_raddr=self.read_addr, i_ren=self.read_en, o_rdata=self.read_data,
                i_waddr=self.write_addr, i_wen=self.write_en, i_wdata=self.write_data,
                i_ren_b=self.read_b_en, o_rdata_b=self.read_b_data)
            return m
        m.submodules.memory = memory = Memory(shape=unsigned(self.width), depth=self.depth,
                                              init=[])
        granularity = self.granularity if self.granularity != self.width else None
        read, write = memory.read_port(), memory.write_port(granularity=granularity)
        m.d.comb += [read.addr.eq(self.read_addr), read.en.eq(self.read_en),
                     self.read_data.eq(read.data), write.addr.eq(self.write_addr),
                     write.data.eq(self.write_data), write.en.eq(self.write_en)]
        if self.second_read:
            read_b = memory.read_port()
            m.d.comb += [read_b.addr.eq(self.write_addr), read_b.en.eq(self.read_b_en),
                         self.read_b_data.eq(read_b.data)]
        return m


class Buffer(wiring.Component):
    """A word-wide RAM behind the tagged ports of :mod:`.ports`, pipelined for an FPGA:
    answers come :attr:`LATENCY` cycles after the request (registered request, block RAM,
    registered output).

    The RAM is built from one ``depth`` x 1 :class:`Ram` per bit: on an ECP5 each maps to
    block RAMs in their 16K x 1 mode, so no output multiplexer sits between the block RAMs
    and the register (a 16K-word, 32-bit buffer is 32 DP16KD either way).

    Parameters
    ----------
    width, depth, granularity : int
        As for :class:`Ram`.
    tag_bits : int
        Width of the readers' tags.

    Members
    -------
    read : In(ReadSignature)
    write : In(WriteSignature)
    """

    LATENCY = 3

    def __init__(self, width, depth, granularity=None, tag_bits=1):
        granularity = granularity or width
        if width % granularity:
            raise ValueError(f"width {width} is not a multiple of granularity {granularity}")
        self.width, self.depth, self.granularity = width, depth, granularity
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "read": In(ReadSignature(abits, width, tag_bits)),
            "write": In(WriteSignature(abits, width, width // granularity)),
        })

    def elaborate(self, platform):
        m = Module()
        r_addr = delay(m, self.read.addr, 1, "r_addr")
        r_en = delay(m, self.read.en, 1, "r_en")
        # Writes are registered too (they are posted: nothing reads back that soon).
        w_addr = delay(m, self.write.addr, 1, "w_addr")
        w_data = delay(m, self.write.data, 1, "w_data")
        w_lanes = delay(m, Cat(self.write.en & bit for bit in self.write.mask), 1, "w_lanes")
        bits = []
        for i in range(self.width):
            m.submodules[f"bit{i}"] = ram = Ram(1, self.depth)
            m.d.comb += [ram.read_addr.eq(r_addr), ram.read_en.eq(r_en),
                         ram.write_addr.eq(w_addr), ram.write_data.eq(w_data[i]),
                         ram.write_en.eq(w_lanes[i // self.granularity])]
            bits.append(ram.read_data)
        m.d.sync += self.read.data.eq(Cat(*bits))
        answer = delay(m, Cat(self.read.en, self.read.tag), self.LATENCY, "answer")
        m.d.comb += [self.read.valid.eq(answer[0]), self.read.rtag.eq(answer[1:])]
        return m
