"""Testbenches for :mod:`amaranth.lib.stream` interfaces in ``amaranth.sim`` (each a function
that makes the async testbench, as ``Simulator.add_testbench`` wants one)."""


def sender(sink, data):
    """Offers each byte of ``data`` on ``sink`` until it is taken, then goes idle."""
    async def testbench(ctx):
        for byte in data:
            ctx.set(sink.payload, byte)
            ctx.set(sink.valid, 1)
            await ctx.tick().until(sink.ready)
        ctx.set(sink.valid, 0)
    return testbench


def collector(source, into, count=None):
    """Always ready on ``source``; appends each payload to ``into`` (until it holds ``count``
    items, or for ever)."""
    async def testbench(ctx):
        ctx.set(source.ready, 1)
        while count is None or len(into) < count:
            _, _, valid, payload = await ctx.tick().sample(source.valid, source.payload)
            if valid:
                into.append(payload)
    return testbench
