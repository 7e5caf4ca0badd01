"""Regenerate ``tests/data/msssim_oracles.npz``: MS-SSIM oracle outputs for the environments
without the oracles.

For each case and oracle of ``tests/test_distances_msssim.py`` (adv_lib's ``ms_ssim_loss`` and
``1 - pytorch_msssim.ms_ssim``, float64): the per-sample values, the gradient in the perturbed
images projected on the case's seeded unit directions, and a fingerprint of the case's images.
Runs in the oracle env (torch, adv-lib, pytorch-msssim)::

    .tox/oracles/bin/python scripts/make_msssim_oracle_data.py
"""

import os
import sys

import numpy as np

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests")
sys.path.insert(0, TESTS)

from test_distances_msssim import (  # noqa: E402
    CASES,
    DATA,
    DIRECTIONS,
    ORACLE_FUNCTIONS,
    ORACLES,
    case_images,
    directions,
    fingerprint,
)


def main() -> None:
    arrays = {f"{case}/fingerprint": fingerprint(case) for case in CASES}
    for oracle, cases in ORACLES.items():
        for case in cases:
            values, grad = ORACLE_FUNCTIONS[oracle](*case_images(case))
            directional = (grad[None] * directions(case)).reshape(DIRECTIONS, -1).sum(axis=1)
            if not (np.all(np.isfinite(values)) and np.all(np.isfinite(directional))):
                raise RuntimeError(f"{oracle} is not finite on case {case!r}: {values}")
            arrays[f"{case}/{oracle}/values"] = values
            arrays[f"{case}/{oracle}/directional"] = directional
            print(f"{case:>9} {oracle:>15}: values {values}, directional {directional}")
    np.savez(DATA, **arrays)
    print(f"wrote {os.path.normpath(DATA)}")


if __name__ == "__main__":
    main()
