"""Shared test fixtures.

Real data lives in ``../shared/data`` next to the repository (CI has it at the
same relative path); tests that need it skip with a clear reason if it is
missing, and everything else uses synthetic data generated here.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("KERAS_UNET_SHARED_DATA", REPO.parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data():
    """Path to ../shared/data (ISBI 2012 slices, DSB 2018 nuclei)."""
    if not (SHARED_DATA / "isbi2012-em").is_dir():
        pytest.fail(
            f"shared data not found at {SHARED_DATA}; "
            "set KERAS_UNET_SHARED_DATA"
        )
    return SHARED_DATA
