"""The ``fw`` fixture (one instance per framework) and the test lanes.

Lanes (``FOOLBOX_ALMA_TEST_LANE``, set by tox.ini):

* unset: every collected test (the ``torch`` env, and a developer's run);
* ``framework`` (the ``tensorflow`` and ``jax`` envs): only the tests that depend on the
  framework installed, those taking the ``fw`` fixture, parametrised by ``framework`` or marked
  ``@pytest.mark.framework``. The others (metrics, the store, messages, the pipeline's logic on
  PyTorch models) run once, in the ``torch`` env.
"""

import os

import pytest
from helpers import FRAMEWORKS, Framework, available


@pytest.fixture(params=FRAMEWORKS)
def fw(request: pytest.FixtureRequest) -> Framework:
    """One fixture instance per framework; frameworks not installed in this env are skipped."""
    if not available(request.param):
        pytest.skip(f"{request.param} is not installed in this environment")
    return Framework(request.param)


def framework_specific(item: pytest.Item) -> bool:
    """Whether a test depends on the framework installed (see the module docstring)."""
    if "fw" in getattr(item, "fixturenames", ()) or item.get_closest_marker("framework"):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "framework" in callspec.params


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if os.environ.get("FOOLBOX_ALMA_TEST_LANE") != "framework":
        return
    kept = [item for item in items if framework_specific(item)]
    dropped = [item for item in items if not framework_specific(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept
