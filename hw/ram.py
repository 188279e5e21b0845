"""Simple dual-port RAM for the large on-chip buffers.

In Amaranth's simulator it is a :class:`amaranth.lib.memory.Memory`. In emitted Verilog it is
an instance of the small behavioural module :data:`RAM_VERILOG`, which yosys maps to block RAM
and Verilator simulates natively: emitting a megabyte-sized ``Memory`` makes Amaranth write
one initialiser per word (60 MB of Verilog and minutes of conversion for the default
configuration), although nothing needs these buffers initialised — the host writes
everything the layer program reads.
"""

from amaranth import Array, Cat, ClockSignal, Instance, Module, Signal, unsigned
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
        if self.second_read and getattr(platform, "family", None) == "ecp5":
            return self._dp16kd(m)
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

    def _dp16kd(self, m):
        """The ECP5's block RAM used as what it is, two ports: one writes or reads, the other
        reads (yosys maps a memory with two read ports to a copy per read port instead). A word
        ``width`` bits wide spreads over blocks of 16 Ki bits: one of 2 K x 9 up to 2 K words,
        else ``width / w`` blocks of (16 K / w) x w; past 16 K words, ranks of 16 K x 1 blocks
        chosen by the high address bits (the read's choice registered with the data)."""
        if self.width != self.granularity:
            raise ValueError("the ECP5 dual-port RAM has one write enable per word")
        depth = 1 << max(11, (self.depth - 1).bit_length())
        rank_depth = min(depth, 16384)
        ranks = depth // rank_depth
        rank_bits = (ranks - 1).bit_length()
        abits = rank_depth.bit_length() - 1
        outputs = []
        for rank in range(ranks):
            data = Signal(self.width, name=f"rank{rank}_data")
            data_b = Signal(self.width, name=f"rank{rank}_data_b")
            if ranks == 1:
                write_en, port_a_en = self.write_en[0], self.write_en[0] | self.read_b_en
            else:
                mine = self.write_addr[abits:abits + rank_bits] == rank
                write_en = self.write_en[0] & mine
                port_a_en = write_en | self.read_b_en
            self._dp16kd_rank(m, rank, rank_depth, abits, data, data_b, write_en, port_a_en)
            outputs.append((data, data_b))
        if ranks == 1:
            m.d.comb += [self.read_data.eq(outputs[0][0]), self.read_b_data.eq(outputs[0][1])]
            return m
        chosen = Signal(rank_bits, name="read_rank")
        chosen_b = Signal(rank_bits, name="read_b_rank")
        with m.If(self.read_en):
            m.d.sync += chosen.eq(self.read_addr[abits:abits + rank_bits])
        with m.If(self.read_b_en):
            m.d.sync += chosen_b.eq(self.write_addr[abits:abits + rank_bits])
        m.d.comb += [self.read_data.eq(Array(o[0] for o in outputs)[chosen]),
                     self.read_b_data.eq(Array(o[1] for o in outputs)[chosen_b])]
        return m

    def _dp16kd_rank(self, m, rank, depth, abits, data, data_b, write_en, port_a_en):
        bits = 9 if depth == 2048 else 16384 // depth          # data bits per block
        per_block = min(bits, 8) if bits == 9 else bits
        low = 14 - abits                                       # address pins below the word's
        for block in range(-(-self.width // per_block)):
            lo, hi = block * per_block, min(self.width, (block + 1) * per_block)
            pins = {}
            # Port A writes (and reads on the cycles it does not), port B reads: the ports
            # and parameters yosys gives the memories it maps (so the post-synthesis tests'
            # units cover this configuration).
            for port, addr in (("A", self.write_addr), ("B", self.read_addr)):
                for i in range(14):
                    bit = i - low
                    pins[f"i_AD{port}{i}"] = addr[bit] if 0 <= bit < abits else 0
                for i in range(3):
                    pins[f"i_CS{port}{i}"] = 0
                pins[f"i_CLK{port}"] = ClockSignal()
                pins[f"i_OCE{port}"] = 1
                pins[f"i_RST{port}"] = 0
            for i in range(18):
                pins[f"i_DIB{i}"] = 0
                pins[f"i_DIA{i}"] = self.write_data[lo + i] if lo + i < hi else 0
                if lo + i < hi:
                    pins[f"o_DOB{i}"] = data[lo + i]
                    pins[f"o_DOA{i}"] = data_b[lo + i]
            pins.update(i_CEB=self.read_en, i_WEB=0, i_CEA=port_a_en, i_WEA=write_en)
            m.submodules[f"rank{rank}_block{block}"] = Instance(
                "DP16KD", p_DATA_WIDTH_A=bits, p_DATA_WIDTH_B=bits, p_REGMODE_A="NOREG",
                p_REGMODE_B="NOREG", p_WRITEMODE_A="READBEFOREWRITE",
                p_WRITEMODE_B="READBEFOREWRITE", p_CSDECODE_A="0b000", p_CSDECODE_B="0b000",
                p_GSR="DISABLED", p_RESETMODE="ASYNC", p_ASYNC_RESET_RELEASE="ASYNC",
                p_CLKAMUX="CLKA", p_CLKBMUX="CLKB", **pins)


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
