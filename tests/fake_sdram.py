"""A stand-in for the SDRAM controller in Amaranth's simulator: it takes requests when it is
ready (at random), and answers each read a fixed number of cycles after taking it, as
``hw/sdram.py``'s controller does."""

import random


class ByteMemory:
    """A uint8 array addressed in 16-bit words, with byte masks: what a test's SDRAM
    holds."""

    def __init__(self, data):
        self.data = data

    def write(self, address, word, mask=0b11):
        for byte in range(2):
            if mask >> byte & 1:
                self.data[2 * address + byte] = word >> (8 * byte) & 0xFF

    def read(self, address):
        return int(self.data[2 * address]) | int(self.data[2 * address + 1]) << 8


def controller(port, memory, latency, seed=1, ready_chance=0.75):
    """The process serving ``port`` (an ``SdramPort`` seen from the controller's side) from
    ``memory`` (``write(address, word, mask)``, ``read(address)``)."""
    rng = random.Random(seed)

    async def process(ctx):
        answers = []                            # (cycle due, word)
        cycle = 0
        while True:
            ready = rng.random() < ready_chance
            ctx.set(port.requests.ready, ready)
            due = bool(answers) and answers[0][0] == cycle
            ctx.set(port.responses.valid, due)
            if due:
                ctx.set(port.responses.payload, answers.pop(0)[1])
            _, _, valid, request = await ctx.tick().sample(port.requests.valid,
                                                           port.requests.payload)
            cycle += 1
            if valid and ready:
                if request.write:
                    memory.write(request.address, request.data, request.mask)
                else:
                    answers.append((cycle + latency - 1, memory.read(request.address)))
    return process
