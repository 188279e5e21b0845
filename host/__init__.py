"""The host side: the driver of a board, real (serial) or simulated (TCP), over the framed link
(:mod:`.device`, :mod:`.link`)."""
