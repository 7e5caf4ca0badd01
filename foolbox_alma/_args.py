"""What the commands' options share: argparse types and the options of ALMA itself.

The types turn a flag's text into values or a one-line error naming what was given
(``--epsilons 0.5,x``: "expected numbers separated by commas, got '0.5,x'"). The ALMA options
(``--distance``, ``--steps``, ``--alpha``, ``--init-lr-distance``) are declared once, with the
defaults the code has, for every command that runs ALMA.
"""

import argparse
from typing import Callable, List, Optional, Sequence, Tuple, Union

from ._runtime import check_bounds

ALPHA_HELP = (
    "ALMA's EMA weight (default: 0.5 up to 100 steps, 0.9 from 1000, joined log-linearly in "
    "between, e.g. 0.69 at 200)"
)
DISTANCES = ("l2", "l1", "ciede2000", "ssim", "msssim", "lpips")


def number_list(kind: type, what: str, minimum: Optional[float] = None) -> Callable[[str], List]:
    """A type for comma-separated numbers of ``kind`` (each >= ``minimum`` when given)."""
    noun = "integers" if kind is int else "numbers"

    def parse(text: str) -> List:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {noun} separated by commas, got {text!r}"
            ) from None
        if minimum is not None and (not values or min(values) < minimum):
            raise argparse.ArgumentTypeError(f"{what} must be >= {minimum:g}, got {text!r}")
        return values

    return parse


def name_list(text: str) -> List[str]:
    """Comma-separated names (empty ones dropped)."""
    return [v.strip() for v in text.split(",") if v.strip()]


def bounds(text: str) -> Tuple[float, float]:
    """``LO,HI`` (finite, LO < HI)."""
    try:
        return check_bounds(text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error} (e.g. 0,1 or 0,255), got {text!r}") from None


def first_step(text: str) -> Union[float, str]:
    """``auto`` or a number: ALMA's ``init_lr_distance``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def add_alma_options(
    parser: argparse.ArgumentParser, steps: int, distances: Sequence[str] = DISTANCES
) -> None:
    """``--distance``, ``--steps``, ``--alpha``, ``--init-lr-distance``."""
    add = parser.add_argument
    add("--distance", default=None, help=f"the distance ALMA minimises: {', '.join(distances)} "
        "(default l2)")  # fmt: skip
    add("--steps", type=int, default=steps, help=f"attack steps (default {steps})")
    add("--alpha", type=float, default=None, help=ALPHA_HELP)
    add("--init-lr-distance", type=first_step, help="how far ALMA's first step moves each "
        "sample, in the distance's units, or auto: the paper's L2 step whatever the distance "
        "(default: the distance's own)")  # fmt: skip
