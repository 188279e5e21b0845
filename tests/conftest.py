import os

# As squeezefpga/__init__.py does, but before this file imports numpy: one BLAS thread.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np
import pytest

from squeezefpga.golden.compiler import compile_model
from squeezefpga.golden.image import load_image
from squeezefpga.golden.importer import load_compressed
from squeezefpga.models import CAT_PHOTO, COFFEE_PHOTO, DEFAULT_MODEL


@pytest.fixture(scope="session")
def model_bytes():
    return DEFAULT_MODEL.read_bytes()


@pytest.fixture(scope="session")
def float_model():
    return load_compressed(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def photos():
    return {"cat": load_image(CAT_PHOTO), "coffee": load_image(COFFEE_PHOTO)}


@pytest.fixture(scope="session")
def compiled(float_model, photos):
    return compile_model(float_model, [photos["cat"], photos["coffee"]])


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
