"""tox's inline plugin: free each environment's disk once it has run, when asked to.

The eight environments together hold well over 10 GB (the oracles env alone, with the CUDA build of
PyTorch that torchvision needs, about 6 GB), more than a fresh CI machine may have free. With
``FOOLBOX_ALMA_TOX_PRUNE=1`` in the environment (``.ci/run`` sets it) every test environment's
folder is removed as soon as tox has torn it down, so the disk never holds more than one of them.
Without it nothing changes: developers keep their environments between runs.
"""

from __future__ import annotations

import os
import shutil

from tox.plugin import impl
from tox.tox_env.api import ToxEnv
from tox.tox_env.runner import RunToxEnv

PRUNE_VARIABLE = "FOOLBOX_ALMA_TOX_PRUNE"


@impl
def tox_env_teardown(tox_env: ToxEnv) -> None:
    if os.environ.get(PRUNE_VARIABLE) != "1" or not isinstance(tox_env, RunToxEnv):
        return
    env_dir = tox_env.env_dir
    if env_dir.is_dir():
        shutil.rmtree(env_dir, ignore_errors=True)
        print(f"{tox_env.name}: removed {env_dir} ({PRUNE_VARIABLE}=1)", flush=True)
