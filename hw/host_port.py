"""Host port: the byte-stream command decoder in front of the accelerator's memories."""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga import protocol as cmd

from .blob_verifier import BlobVerifier
from .codes import Opcode, Status
from .ports import ReadSignature, WriteSignature

__all__ = ["HostPort"]


class HostPort(wiring.Component):
    """Executes the commands of :mod:`squeezefpga.protocol` one at a time.

    Unknown command bytes are answered with ``STATUS_UNKNOWN_COMMAND``; a command whose
    arguments or data stop arriving for ``config.timeout_cycles`` cycles is abandoned without
    a reply, so a truncated write never wedges the port. Memory writes that arrive while the
    sequencer runs are dropped and answered with ``STATUS_BUSY``.

    SET_MODEL verifies the blob in the weight buffer before it records the model: the CRC-32
    of the whole blob (its length from the header, the header's CRC field taken as zero) must
    equal both the header's CRC field and the host's argument, else ``STATUS_BAD_MODEL``. RUN
    needs a verified model (``STATUS_NO_MODEL``); any weight write clears it.

    Members
    -------
    host_in : In(stream.Signature(8)); host_out : Out(stream.Signature(8))
    idle : Out(1)
        No command in progress.
    weights_write : Out(WriteSignature)
        Weight buffer write port (byte lanes).
    weights : Out(ReadSignature)
        Weight buffer read port (used while the sequencer is idle; shared with the blob
        verifier of SET_MODEL).
    act_read : Out(ReadSignature); act_write : Out(WriteSignature)
    run, first, last : Out; running, error : In(1); step : In(8)
        Run control, and the step the sequencer is on (for STATUS).
    model_loaded : Out(1)
        A model verified by SET_MODEL is in the weight buffer.
    ctr_addr : Out(8); ctr_data : In(32); totals : In(192)
        Per-step cycle counters (read port) and the three 64-bit totals.
    """

    def __init__(self, config, build_id=0):
        self.config = c = config
        self.build_id = build_id
        word_bits = max(1, (c.weight_words - 1).bit_length())
        super().__init__({
            "host_in": In(stream.Signature(8)),
            "host_out": Out(stream.Signature(8)),
            "idle": Out(1),
            "weights_write": Out(WriteSignature(word_bits, 32, 4)),
            "weights": Out(ReadSignature(word_bits, 32, word_bits + 1)),
            "act_read": Out(ReadSignature(c.act_addr_bits, 8 * c.lanes)),
            "act_write": Out(WriteSignature(c.act_addr_bits, 8 * c.lanes, c.lanes)),
            "run": Out(1), "first": Out(8), "last": Out(8),
            "running": In(1), "error": In(1), "step": In(8),
            "model_loaded": Out(1),
            "ctr_addr": Out(8), "ctr_data": In(32), "totals": In(192),
        })

    def info_bytes(self):
        c = self.config
        """The constant part of the INFO reply (all but the loaded-model fields)."""
        full = cmd.INFO.pack(cmd.INFO_MAGIC, cmd.PORT_VERSION, c.lanes, c.activation_bytes,
                             c.weight_bytes, c.max_layers, c.max_taps, c.max_channels,
                             self.build_id, 0, 0)
        return full[:-5]

    def elaborate(self, platform):
        m = Module()
        c = self.config
        code, args = Signal(Opcode, init=Opcode.INFO), Signal(64)
        n_args, got = Signal(4), Signal(4)
        addr, length = args[:32], args[32:]
        idx, reply_len = Signal(32), Signal(32)
        timer = Signal(range(c.timeout_cycles + 1))
        status, busy_drop = Signal(Status), Signal()
        byte_sel = Signal(2)
        snapshot = Signal(192)
        info_const = self.info_bytes()
        info = Array(Const(b, 8) for b in info_const)
        model_valid, model_crc = Signal(), Signal(32)
        model_fields = Cat(model_valid, Const(0, 7), model_crc)
        m.submodules.verifier = verifier = BlobVerifier(len(self.weights.addr))
        m.d.comb += self.model_loaded.eq(model_valid)
        reply_byte = Signal(8)
        run_last = Signal(8)
        status_reply = Signal(8 * cmd.STATUS_REPLY.size)
        at = Signal(32)
        m.d.comb += at.eq(addr + idx)
        known = Signal()
        m.d.comb += known.eq(Cat(self.host_in.payload == k for k in cmd.ARG_BYTES).any())
        arg_count = Array(Const(cmd.ARG_BYTES.get(k, 0), 4) for k in range(256))
        counter_bytes = cmd.COUNTER_HEADER.size

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.host_in.ready.eq(1)]
                with m.If(self.host_in.valid):
                    m.d.sync += [code.eq(self.host_in.payload), got.eq(0), timer.eq(0),
                                 n_args.eq(arg_count[self.host_in.payload]), idx.eq(0),
                                 busy_drop.eq(0)]
                    with m.If(~known):
                        m.d.sync += status.eq(Status.UNKNOWN_COMMAND)
                        m.next = "STATUS"
                    with m.Elif(arg_count[self.host_in.payload] == 0):
                        m.next = "EXEC"
                    with m.Else():
                        m.next = "ARGS"
            with m.State("ARGS"):
                m.d.comb += self.host_in.ready.eq(1)
                with m.If(self.host_in.valid):
                    m.d.sync += [args.eq(Cat(args[8:], self.host_in.payload)), got.eq(got + 1),
                                 timer.eq(0)]
                    with m.If(got + 1 == n_args):
                        m.next = "EXEC"
                with m.Elif(timer == c.timeout_cycles):
                    m.next = "IDLE"          # the host vanished mid-command
                with m.Else():
                    m.d.sync += timer.eq(timer + 1)
            with m.State("EXEC"):
                m.d.sync += [status.eq(Status.OK), timer.eq(0)]
                with m.Switch(code):
                    with m.Case(Opcode.WRITE_WEIGHTS, Opcode.WRITE_ACT):
                        with m.If(length == 0):
                            m.next = "STATUS"
                        with m.Else():
                            m.next = "DATA"
                    with m.Case(Opcode.READ_ACT, Opcode.READ_WEIGHTS):
                        m.d.sync += [reply_len.eq(length),
                                     busy_drop.eq(self.running)]
                        m.next = "SETUP"
                    with m.Case(Opcode.RUN):
                        with m.If(self.running):
                            m.d.sync += status.eq(Status.BUSY)
                        with m.Elif(~model_valid):
                            m.d.sync += status.eq(Status.NO_MODEL)
                        with m.Else():
                            m.d.comb += [self.run.eq(1), self.first.eq(args[48:56]),
                                         self.last.eq(args[56:64])]
                            m.d.sync += run_last.eq(args[56:64])
                        m.next = "STATUS"
                    with m.Case(Opcode.WAIT):
                        m.next = "WAIT"
                    with m.Case(Opcode.SET_MODEL):
                        with m.If(self.running):
                            m.d.sync += status.eq(Status.BUSY)
                            m.next = "STATUS"
                        with m.Else():
                            m.d.comb += [verifier.start.eq(1), verifier.expect.eq(args[32:])]
                            m.d.sync += model_valid.eq(0)
                            m.next = "VERIFY"
                    with m.Case(Opcode.STATUS):
                        flags = Cat(self.running, self.error, model_valid)
                        m.d.sync += [reply_len.eq(cmd.STATUS_REPLY.size),
                                     status_reply.eq(Cat(flags, Const(0, 5), self.step,
                                                         run_last, self.totals[:32]))]
                        m.next = "SETUP"
                    with m.Case(Opcode.COUNTERS):
                        m.d.sync += [reply_len.eq(counter_bytes + 4 * c.max_layers),
                                     snapshot.eq(self.totals)]
                        m.next = "SETUP"
                    with m.Case(Opcode.INFO):
                        m.d.sync += reply_len.eq(cmd.INFO.size)
                        m.next = "SETUP"
            with m.State("DATA"):
                m.d.comb += self.host_in.ready.eq(1)
                with m.If(self.host_in.valid):
                    m.d.sync += [idx.eq(idx + 1), timer.eq(0)]
                    with m.If(self.running):
                        m.d.sync += busy_drop.eq(1)
                    with m.Elif(code == Opcode.WRITE_WEIGHTS):
                        m.d.sync += model_valid.eq(0)    # the recorded model is gone
                        m.d.comb += [self.weights_write.addr.eq(at[2:]),
                                     self.weights_write.en.eq(1),
                                     self.weights_write.mask.eq(1 << at[:2]),
                                     self.weights_write.data.eq(Cat(*[self.host_in.payload] * 4))]
                    with m.Else():
                        m.d.comb += [self.act_write.addr.eq(at), self.act_write.en.eq(1),
                                     self.act_write.mask.eq(1),
                                     self.act_write.data.eq(self.host_in.payload)]
                    with m.If(idx + 1 == length):
                        m.d.sync += status.eq(Mux(self.running | busy_drop, Status.BUSY,
                                                  Status.OK))
                        m.next = "STATUS"
                with m.Elif(timer == c.timeout_cycles):
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer + 1)
            with m.State("VERIFY"):       # the blob in the weight buffer against the CRC
                wiring.connect(m, verifier.mem, wiring.flipped(self.weights))
                with m.If(verifier.done):
                    m.d.sync += [model_valid.eq(verifier.ok), model_crc.eq(args[32:]),
                                 status.eq(Mux(verifier.ok, Status.OK,
                                               Status.BAD_MODEL))]
                    m.next = "STATUS"
            with m.State("WAIT"):
                with m.If(~self.running):
                    m.d.sync += status.eq(Mux(self.error, Status.RUN_ERROR, Status.OK))
                    m.next = "STATUS"
            with m.State("SETUP"):
                # Ask for byte idx of the reply: the memories answer through their pipelines
                # (ANSWER waits for them), the counters and the constants at once.
                with m.If(idx == reply_len):
                    with m.If(busy_drop):
                        m.d.sync += status.eq(Status.BUSY)
                    m.next = "STATUS"
                with m.Else():
                    ctr_at = idx - counter_bytes
                    with m.Switch(code):
                        with m.Case(Opcode.READ_ACT):
                            m.d.comb += [self.act_read.addr.eq(at), self.act_read.en.eq(1)]
                        with m.Case(Opcode.READ_WEIGHTS):
                            m.d.comb += [self.weights.addr.eq(at[2:]), self.weights.en.eq(1)]
                    m.d.comb += self.ctr_addr.eq(ctr_at[2:])
                    m.d.sync += byte_sel.eq(Mux(code == Opcode.COUNTERS, ctr_at[:2], at[:2]))
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                with m.Switch(code):
                    with m.Case(Opcode.READ_ACT):
                        m.d.sync += reply_byte.eq(self.act_read.data[:8])
                        with m.If(self.act_read.valid):
                            m.next = "SEND"
                    with m.Case(Opcode.READ_WEIGHTS):
                        m.d.sync += reply_byte.eq(self.weights.data.word_select(byte_sel, 8))
                        with m.If(self.weights.valid):
                            m.next = "SEND"
                    with m.Case(Opcode.STATUS):
                        m.d.sync += reply_byte.eq(status_reply.word_select(idx[:3], 8))
                        m.next = "SEND"
                    with m.Case(Opcode.COUNTERS):
                        m.d.sync += reply_byte.eq(Mux(
                            idx < counter_bytes, snapshot.word_select(idx[:5], 8),
                            self.ctr_data.word_select(byte_sel, 8)))
                        m.next = "SEND"
                    with m.Case(Opcode.INFO):
                        m.d.sync += reply_byte.eq(Mux(
                            idx < len(info_const), info[idx[:5]],
                            model_fields.word_select((idx - len(info_const))[:3], 8)))
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.host_out.valid.eq(1), self.host_out.payload.eq(reply_byte)]
                with m.If(self.host_out.ready):
                    m.d.sync += idx.eq(idx + 1)
                    m.next = "SETUP"
            with m.State("STATUS"):
                m.d.comb += [self.host_out.valid.eq(1), self.host_out.payload.eq(status)]
                with m.If(self.host_out.ready):
                    m.next = "IDLE"
        return m
