"""Link layer: framed, CRC-checked messages in front of the accelerator's host port.

docs/PROTOCOL.md is the contract and :mod:`squeezefpga.protocol` holds its constants;
``squeezefpga.host.link`` is the host side.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, stream, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga.protocol import LINK_VERSION, MAX_PAYLOAD, SOF

from .codes import LinkStatus
from .ram import Ram

__all__ = ["LinkLayer"]


class LinkLayer(wiring.Component):
    """Receives request frames, checks them, hands the payload to the host port and frames
    its reply.

    The receiver hunts for the start byte, so garbage between frames costs nothing; a frame
    whose bytes stop arriving for ``timeout_cycles`` is abandoned; a length over
    ``MAX_PAYLOAD``, a bad CRC or a wrong version is answered with an error status and the
    payload is not executed.

    Members
    -------
    host_in : In(stream.Signature(8)); host_out : Out(stream.Signature(8))
        The link (UART or the simulated board's socket).
    port_in : Out(stream.Signature(8)); port_out : In(stream.Signature(8))
        To and from :class:`squeezefpga.hw.host_port.HostPort`.
    port_idle : In(1)
    idle : Out(1)
        Hunting for a frame, nothing pending.
    """

    def __init__(self, timeout_cycles):
        if timeout_cycles < 1:
            raise ValueError(f"timeout_cycles must be positive, not {timeout_cycles}")
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "host_in": In(stream.Signature(8)),
            "host_out": Out(stream.Signature(8)),
            "port_in": Out(stream.Signature(8)),
            "port_out": In(stream.Signature(8)),
            "port_idle": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.request = request = Ram(8, MAX_PAYLOAD)
        m.submodules.reply = reply = Ram(8, MAX_PAYLOAD)
        # zlib's CRC-32 of the received frame (after the SOF) and of the reply being sent.
        m.submodules.rx_crc = rx_crc = crc.catalog.CRC32_ISO_HDLC(data_width=8).create()
        m.submodules.tx_crc = tx_crc = crc.catalog.CRC32_ISO_HDLC(data_width=8).create()
        version, seq, status = Signal(8), Signal(8), Signal(LinkStatus)
        length, idx = Signal(16), Signal(16)
        header = Signal(3)
        received_crc = Signal(32)
        timer = Signal(range(self.timeout_cycles + 1))
        reply_len, overflow = Signal(16), Signal()
        # Each frame buffer's read data, registered on every cycle: its own register keeps the
        # slow block-RAM output (and the mux over its blocks) off any other logic. The RAM holds
        # its data between reads, so the register holds it too.
        request_byte, reply_byte = Signal(8), Signal(8)
        m.d.sync += [request_byte.eq(request.read_data), reply_byte.eq(reply.read_data)]
        byte_in = self.host_in.payload
        got = self.host_in.valid & self.host_in.ready
        m.d.comb += rx_crc.data.eq(byte_in)

        def watchdog():
            with m.If(got):
                m.d.sync += timer.eq(0)
            with m.Elif(timer == self.timeout_cycles):
                m.next = "HUNT"          # the sender vanished mid-frame
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        # The host port sits across the chip from the link (by the SDRAM and the memories),
        # so nothing of it reaches this state machine in the cycle it changes: a request byte
        # waits for the port in `to_port`, a reply byte arrives through `from_port`, and the
        # port being done is sampled into `port_quiet`.
        to_port_valid, to_port = Signal(), Signal(8)
        from_port_valid, from_port = Signal(), Signal(8)
        port_quiet = Signal()
        m.d.comb += [self.port_in.valid.eq(to_port_valid), self.port_in.payload.eq(to_port)]
        with m.If(self.port_in.ready):
            m.d.sync += to_port_valid.eq(0)
        m.d.sync += [from_port_valid.eq(self.port_out.valid), from_port.eq(self.port_out.payload),
                     port_quiet.eq(0)]

        # Replies of the host port are collected whenever the port talks.
        m.d.comb += self.port_out.ready.eq(1)
        with m.If(from_port_valid):
            with m.If(reply_len < MAX_PAYLOAD):
                m.d.comb += [reply.write_addr.eq(reply_len),
                             reply.write_data.eq(from_port), reply.write_en.eq(1)]
                m.d.sync += reply_len.eq(reply_len + 1)
            with m.Else():
                m.d.sync += overflow.eq(1)

        out_header = Array([Const(SOF, 8), Const(LINK_VERSION, 8), seq, status.as_value(),
                            reply_len[:8], reply_len[8:]])
        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [self.idle.eq(1), self.host_in.ready.eq(1)]
                with m.If(self.host_in.valid & (byte_in == SOF)):
                    m.d.comb += rx_crc.start.eq(1)
                    m.d.sync += [header.eq(0), timer.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):          # version, sequence, length (2)
                m.d.comb += self.host_in.ready.eq(1)
                watchdog()
                with m.If(self.host_in.valid):
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += header.eq(header + 1)
                    with m.Switch(header):
                        with m.Case(0):
                            m.d.sync += version.eq(byte_in)
                        with m.Case(1):
                            m.d.sync += seq.eq(byte_in)
                        with m.Case(2):
                            m.d.sync += length[:8].eq(byte_in)
                        with m.Case(3):
                            m.d.sync += [length[8:].eq(byte_in), idx.eq(0),
                                         received_crc.eq(0)]
                            full = Cat(length[:8], byte_in)
                            with m.If(full > MAX_PAYLOAD):
                                m.d.sync += status.eq(LinkStatus.TOO_LONG)
                                m.next = "REPLY"
                            with m.Elif(full == 0):
                                m.next = "CHECK"
                            with m.Else():
                                m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += self.host_in.ready.eq(1)
                watchdog()
                with m.If(self.host_in.valid):
                    m.d.comb += [request.write_addr.eq(idx), request.write_data.eq(byte_in),
                                 request.write_en.eq(1)]
                    m.d.comb += rx_crc.valid.eq(1)
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == length):
                        m.d.sync += idx.eq(0)
                        m.next = "CHECK"
            with m.State("CHECK"):          # the CRC, little-endian
                m.d.comb += self.host_in.ready.eq(1)
                watchdog()
                with m.If(self.host_in.valid):
                    value = Cat(received_crc[8:], byte_in)
                    m.d.sync += [received_crc.eq(value), idx.eq(idx + 1)]
                    with m.If(idx == 3):
                        m.d.sync += [idx.eq(0), reply_len.eq(0), overflow.eq(0)]
                        with m.If(value != rx_crc.crc):
                            m.d.sync += status.eq(LinkStatus.BAD_CRC)
                            m.next = "REPLY"
                        with m.Elif(version != LINK_VERSION):
                            m.d.sync += status.eq(LinkStatus.BAD_VERSION)
                            m.next = "REPLY"
                        with m.Elif(length == 0):
                            m.d.sync += status.eq(LinkStatus.OK)
                            m.next = "COLLECT"
                        with m.Else():
                            m.d.sync += status.eq(LinkStatus.OK)
                            m.next = "FETCH"
            with m.State("FETCH"):           # payload byte idx -> the host port
                m.d.comb += [request.read_addr.eq(idx), request.read_en.eq(1)]
                m.next = "LATCH"
            with m.State("LATCH"):           # the block RAM's output, into request_byte
                m.next = "FORWARD"
            with m.State("FORWARD"):         # when the port has taken the byte before
                with m.If(~to_port_valid):
                    m.d.sync += [to_port_valid.eq(1), to_port.eq(request_byte), idx.eq(idx + 1)]
                    with m.If(idx + 1 == length):
                        m.next = "COLLECT"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("COLLECT"):         # until the port has sent its whole reply
                # Sampled only once the last request byte has gone (the port is idle until it
                # takes that byte, and busy from the cycle after); quiet also means the byte
                # the port sent last is already in the reply buffer.
                m.d.sync += port_quiet.eq(~to_port_valid & self.port_idle & ~self.port_out.valid)
                with m.If(port_quiet):
                    m.d.sync += [idx.eq(0),
                                 status.eq(Mux(overflow, LinkStatus.REPLY_OVERFLOW, LinkStatus.OK))]
                    m.next = "REPLY"
            with m.State("REPLY"):           # start byte, version, sequence, status, length
                with m.If(status != LinkStatus.OK):
                    m.d.sync += reply_len.eq(0)
                m.d.comb += tx_crc.start.eq(1)
                m.d.sync += idx.eq(0)
                m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                byte = out_header[idx[:3]]
                m.d.comb += [self.host_out.valid.eq(1), self.host_out.payload.eq(byte)]
                with m.If(self.host_out.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx != 0):
                        m.d.comb += [tx_crc.valid.eq(1), tx_crc.data.eq(byte)]
                    with m.If(idx == 5):
                        m.d.sync += idx.eq(0)
                        with m.If(reply_len == 0):
                            m.next = "SEND_CRC"
                        with m.Else():
                            m.next = "SEND_FETCH"
            with m.State("SEND_FETCH"):
                m.d.comb += [reply.read_addr.eq(idx), reply.read_en.eq(1)]
                m.next = "SEND_LATCH"
            with m.State("SEND_LATCH"):      # the block RAM's output, into reply_byte
                m.next = "SEND_DATA"
            with m.State("SEND_DATA"):
                m.d.comb += [self.host_out.valid.eq(1), self.host_out.payload.eq(reply_byte)]
                with m.If(self.host_out.ready):
                    m.d.comb += [tx_crc.valid.eq(1), tx_crc.data.eq(reply_byte)]
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx + 1 == reply_len):
                        m.d.sync += idx.eq(0)
                        m.next = "SEND_CRC"
                    with m.Else():
                        m.next = "SEND_FETCH"
            with m.State("SEND_CRC"):
                m.d.comb += [self.host_out.valid.eq(1),
                             self.host_out.payload.eq(tx_crc.crc.word_select(idx[:2], 8))]
                with m.If(self.host_out.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 3):
                        m.next = "HUNT"
        return m
