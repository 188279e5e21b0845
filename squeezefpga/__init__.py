"""squeezefpga: the compressed SqueezeNet on an open-source FPGA accelerator.

Sub-packages map onto the repository's folders: ``squeezefpga.golden`` (the executable
specification), ``squeezefpga.hw`` (Amaranth gateware), ``squeezefpga.sim`` (simulation),
``squeezefpga.host`` (driver and CLI), ``squeezefpga.boards`` and ``squeezefpga.models``
(the vendored model and photos).
"""

__version__ = "0.1.0"
