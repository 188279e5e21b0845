"""Host port: the byte-stream command decoder in front of the accelerator's memories."""

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from squeezefpga import protocol as cmd
from squeezefpga.sdram import WORDS

from .blob_verifier import BlobVerifier
from .codes import Opcode, Status
from .ports import ReadSignature, WriteSignature
from .sdram import SdramPort
from .sdram_test import PatternResultLayout

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
    run, first, last : Out; running, error : In(1); step : In(16)
        Run control, and the step the sequencer is on (for STATUS).
    model_loaded : Out(1)
        A model verified by SET_MODEL is in the weight buffer.
    ctr_addr : Out(16); ctr_data : In(96); totals : In(192)
        Per-step counters (read port: cycles, cycles waiting for transfers, SDRAM bytes
        moved, ``protocol.COUNTER_ENTRY``) and the three 64-bit totals.
    sdram : Out(SdramPort()); sdram_ready : In(1); refreshes : In(32)
        The board's SDRAM, for WRITE_SDRAM and READ_SDRAM (one byte per request), once its
        controller is ready (``sdram_ready`` stays low on a device without SDRAM).
    test_start : Out(1); test_words : Out(25); test_busy : In(1);
    test_result : In(PatternResultLayout); test_progress : In(25)
        The SDRAM pattern tester (SDRAM_TEST starts it, SDRAM_RESULT reports on it).
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
            "run": Out(1), "first": Out(16), "last": Out(16),
            "running": In(1), "error": In(1), "step": In(16),
            "model_loaded": Out(1),
            "ctr_addr": Out(16), "ctr_data": In(96), "totals": In(192),
            "sdram": Out(SdramPort()), "sdram_ready": In(1), "refreshes": In(32),
            "test_start": Out(1), "test_words": Out(25), "test_busy": In(1),
            "test_result": In(PatternResultLayout), "test_progress": In(25),
        })

    def info_bytes(self):
        c = self.config
        """The constant part of the INFO reply (all but the loaded-model fields)."""
        full = cmd.INFO.pack(cmd.INFO_MAGIC, cmd.PORT_VERSION, c.lanes, c.activation_bytes,
                             c.weight_bytes, c.max_layers, c.max_taps, c.max_channels,
                             c.sdram_bytes, self.build_id, 0, 0)
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
        run_last = Signal(16)
        # COUNTERS: the step whose entry is being sent, and the byte of it.
        ctr_entry, ctr_byte = Signal(16), Signal(range(cmd.COUNTER_ENTRY.size))
        # The replies of STATUS and SDRAM_RESULT, taken in EXEC.
        small_reply = Signal(8 * max(cmd.STATUS_REPLY.size, cmd.SDRAM_RESULT.size))
        sdram_cmd = Signal()        # WRITE_SDRAM or READ_SDRAM, allowed to go ahead
        test_words = Signal(32)     # the words the last SDRAM_TEST covers
        # addr + idx, kept in a register (set in EXEC, stepped with idx): the memories'
        # addresses come from a register, not through an adder.
        at = Signal(32)
        known = Signal()
        m.d.comb += known.eq(Cat(self.host_in.payload == k for k in cmd.ARG_BYTES).any())
        arg_count = Array(Const(cmd.ARG_BYTES.get(k, 0), 4) for k in range(256))
        counter_bytes = cmd.COUNTER_HEADER.size

        # A byte for the weight buffer or the activation memory, written from registers.
        byte, byte_at = Signal(8), Signal(32)
        weight_pending, act_pending = Signal(), Signal()
        m.d.sync += [weight_pending.eq(0), act_pending.eq(0)]
        m.d.comb += [self.weights_write.addr.eq(byte_at[2:]),
                     self.weights_write.en.eq(weight_pending),
                     self.weights_write.mask.eq(1 << byte_at[:2]),
                     self.weights_write.data.eq(Cat(*[byte] * 4)),
                     self.act_write.addr.eq(byte_at), self.act_write.en.eq(act_pending),
                     self.act_write.mask.eq(1), self.act_write.data.eq(byte)]
        # A byte for the SDRAM, offered to the controller's queue from the same registers
        # until it takes it (the link's stream never reaches the queue in one cycle).
        sdram_pending = Signal()
        with m.If(sdram_pending):
            m.d.comb += [self.sdram.requests.valid.eq(1),
                         self.sdram.requests.payload.write.eq(1),
                         self.sdram.requests.payload.address.eq(byte_at[1:]),
                         self.sdram.requests.payload.data.eq(Cat(byte, byte)),
                         self.sdram.requests.payload.mask.eq(Mux(byte_at[0], 0b10, 0b01))]
            with m.If(self.sdram.requests.ready):
                m.d.sync += sdram_pending.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(~weight_pending & ~act_pending & ~sdram_pending),
                             self.host_in.ready.eq(~sdram_pending)]
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
                m.d.sync += [status.eq(Status.OK), timer.eq(0), at.eq(addr)]
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
                    # The SDRAM: refused without one, and while a run or the test uses it
                    # (a write's bytes are then read and dropped, a read answers zeros).
                    with m.Case(Opcode.WRITE_SDRAM, Opcode.READ_SDRAM):
                        free = ~self.running & ~self.test_busy
                        m.d.sync += [sdram_cmd.eq(self.sdram_ready & free),
                                     status.eq(Mux(~self.sdram_ready, Status.NO_SDRAM,
                                                   Mux(free, Status.OK, Status.BUSY))),
                                     reply_len.eq(length)]
                        with m.If(code == Opcode.READ_SDRAM):
                            m.next = "SETUP"
                        with m.Elif(length == 0):
                            m.next = "STATUS"
                        with m.Else():
                            m.next = "DATA"
                    with m.Case(Opcode.SDRAM_TEST):
                        with m.If(~self.sdram_ready):
                            m.d.sync += status.eq(Status.NO_SDRAM)
                        with m.Elif(self.running | self.test_busy):
                            m.d.sync += status.eq(Status.BUSY)
                        with m.Else():
                            words = Mux(args[32:] > WORDS, WORDS, args[32:])
                            m.d.comb += [self.test_start.eq(1), self.test_words.eq(words)]
                            # The test overwrites the SDRAM: a tiled model's weights too.
                            m.d.sync += [test_words.eq(words), model_valid.eq(0)]
                        m.next = "STATUS"
                    with m.Case(Opcode.SDRAM_RESULT):
                        r = self.test_result
                        flags = Cat(self.test_busy, r.passed & ~self.test_busy)
                        m.d.sync += [reply_len.eq(cmd.SDRAM_RESULT.size),
                                     small_reply.eq(Cat(flags, Const(0, 6), r.phase,
                                                        Const(0, 6), self.test_progress,
                                                        Const(0, 7), r.address, Const(0, 8),
                                                        r.expected, r.read,
                                                        test_words, self.refreshes))]
                        m.next = "SETUP"
                    with m.Case(Opcode.RUN):
                        with m.If(self.running):
                            m.d.sync += status.eq(Status.BUSY)
                        with m.Elif(~model_valid):
                            m.d.sync += status.eq(Status.NO_MODEL)
                        with m.Else():
                            m.d.comb += [self.run.eq(1), self.first.eq(args[32:48]),
                                         self.last.eq(args[48:64])]
                            m.d.sync += run_last.eq(args[48:64])
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
                                     small_reply.eq(Cat(flags, Const(0, 5), self.step,
                                                        run_last, self.totals[:32]))]
                        m.next = "SETUP"
                    with m.Case(Opcode.COUNTERS):
                        # Entries first .. first + count - 1, cut at the last counter.
                        first, count = args[32:48], args[48:64]
                        left = Mux(first < c.max_layers, c.max_layers - first, 0)
                        entries = Mux(count < left, count, left)
                        assert cmd.COUNTER_ENTRY.size == 12     # 12 n as shifts: no DSP
                        m.d.sync += [reply_len.eq(counter_bytes + (entries << 3)
                                                  + (entries << 2)),
                                     snapshot.eq(self.totals), ctr_entry.eq(first),
                                     ctr_byte.eq(0)]
                        m.next = "SETUP"
                    with m.Case(Opcode.INFO):
                        m.d.sync += reply_len.eq(cmd.INFO.size)
                        m.next = "SETUP"
            with m.State("DATA"):
                # Every byte is taken into registers and written from them a cycle later; an
                # SDRAM byte when the one before has gone into the controller's queue.
                with m.If(code == Opcode.WRITE_SDRAM):
                    m.d.comb += self.host_in.ready.eq(~sdram_pending)
                with m.Else():
                    m.d.comb += self.host_in.ready.eq(1)
                with m.If(self.host_in.valid & self.host_in.ready):
                    m.d.sync += [idx.eq(idx + 1), at.eq(at + 1), timer.eq(0),
                                 byte.eq(self.host_in.payload), byte_at.eq(at)]
                    with m.If(code == Opcode.WRITE_SDRAM):
                        m.d.sync += sdram_pending.eq(sdram_cmd)
                    with m.Elif(self.running):
                        m.d.sync += busy_drop.eq(1)
                    with m.Elif(code == Opcode.WRITE_WEIGHTS):
                        m.d.sync += [model_valid.eq(0),      # the recorded model is gone
                                     weight_pending.eq(1)]
                    with m.Else():
                        m.d.sync += act_pending.eq(1)
                    with m.If((idx + 1 == length) & (code != Opcode.WRITE_SDRAM)):
                        m.d.sync += status.eq(Mux(self.running | busy_drop, Status.BUSY,
                                                  Status.OK))
                        m.next = "STATUS"
                    with m.Elif(idx + 1 == length):
                        m.next = "STATUS"       # the status was set in EXEC
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
                    asked = Signal()
                    m.d.comb += asked.eq(1)
                    with m.Switch(code):
                        with m.Case(Opcode.READ_ACT):
                            m.d.comb += [self.act_read.addr.eq(at), self.act_read.en.eq(1)]
                        with m.Case(Opcode.READ_WEIGHTS):
                            m.d.comb += [self.weights.addr.eq(at[2:]), self.weights.en.eq(1)]
                        with m.Case(Opcode.READ_SDRAM):
                            m.d.comb += [self.sdram.requests.valid.eq(sdram_cmd),
                                         self.sdram.requests.payload.address.eq(at[1:]),
                                         asked.eq(~sdram_cmd | self.sdram.requests.ready)]
                    m.d.comb += self.ctr_addr.eq(ctr_entry)
                    m.d.sync += byte_sel.eq(at[:2])
                    with m.If(asked & (code == Opcode.COUNTERS)):
                        m.next = "COUNTER"
                    with m.Elif(asked):
                        m.next = "ANSWER"
            with m.State("COUNTER"):      # the counters' block RAM, then a register
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
                    with m.Case(Opcode.READ_SDRAM):
                        m.d.sync += reply_byte.eq(self.sdram.responses.payload.word_select(
                            byte_sel[0], 8))
                        with m.If(self.sdram.responses.valid | ~sdram_cmd):
                            with m.If(~sdram_cmd):
                                m.d.sync += reply_byte.eq(0)
                            m.next = "SEND"
                    with m.Case(Opcode.STATUS, Opcode.SDRAM_RESULT):
                        m.d.sync += reply_byte.eq(small_reply.word_select(idx[:5], 8))
                        m.next = "SEND"
                    with m.Case(Opcode.COUNTERS):
                        m.d.sync += reply_byte.eq(Mux(
                            idx < counter_bytes, snapshot.word_select(idx[:5], 8),
                            self.ctr_data.word_select(ctr_byte, 8)))
                        m.next = "SEND"
                    with m.Case(Opcode.INFO):
                        m.d.sync += reply_byte.eq(Mux(
                            idx < len(info_const), info[idx[:5]],
                            model_fields.word_select((idx - len(info_const))[:3], 8)))
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.host_out.valid.eq(1), self.host_out.payload.eq(reply_byte)]
                with m.If(self.host_out.ready):
                    m.d.sync += [idx.eq(idx + 1), at.eq(at + 1)]
                    with m.If((code == Opcode.COUNTERS) & (idx >= counter_bytes)):
                        last_byte = ctr_byte == cmd.COUNTER_ENTRY.size - 1
                        m.d.sync += [ctr_byte.eq(Mux(last_byte, 0, ctr_byte + 1)),
                                     ctr_entry.eq(ctr_entry + last_byte)]
                    m.next = "SETUP"
            with m.State("STATUS"):
                m.d.comb += [self.host_out.valid.eq(1), self.host_out.payload.eq(status)]
                with m.If(self.host_out.ready):
                    m.next = "IDLE"
        return m
