"""squeezefpga: the compressed SqueezeNet on an open-source FPGA accelerator.

Sub-packages map onto the repository's folders: ``squeezefpga.golden`` (the executable
specification), ``squeezefpga.hw`` (Amaranth gateware), ``squeezefpga.sim`` (simulation),
``squeezefpga.host`` (the device driver), ``squeezefpga.boards`` (FPGA builds),
``squeezefpga.models`` (the vendored model and photos) and ``squeezefpga.app`` (the command
line). The modules directly in ``squeezefpga`` are the ground floor every layer shares:
``errors``, ``blob_format``, ``protocol``, ``config``, ``progress`` and ``imports``.
"""

import os

__version__ = "0.1.0"

# One BLAS thread: the integer model and the quantizer multiply small matrices, for which
# OpenBLAS's threads only oversubscribe the cores (compile: 14 s with one thread, 165 s with
# the default on a loaded 2-core machine). Set before numpy is imported; a user's own
# setting wins.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
