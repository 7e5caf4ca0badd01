import pytest
from helpers import FRAMEWORKS, Framework, available


@pytest.fixture(params=FRAMEWORKS)
def fw(request: pytest.FixtureRequest) -> Framework:
    """One fixture instance per framework; frameworks not installed in this env are skipped."""
    if not available(request.param):
        pytest.skip(f"{request.param} is not installed in this environment")
    return Framework(request.param)
