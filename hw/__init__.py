"""Amaranth 0.5 gateware of the accelerator (conv engine, weight decoder, sequencer, buffers, host port)."""
