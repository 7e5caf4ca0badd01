"""Sanity flags: when an evaluation's numbers should not be trusted as they are.

AutoAttack warns when its robust accuracy may be an overestimate (randomised models, softmax
outputs, zero gradients, ...); a minimal-norm evaluation has the same pitfalls, and a median
distance is published just as readily. Signals are collected where they are cheap:

* on the model, once per run (:func:`model_signals`): two forwards of the same inputs that differ
  (a stochastic model: dropout left on, random transforms); outputs that are probabilities (each
  row in [0, 1], summing to 1: a softmax at the end saturates and flattens the gradients); a
  PyTorch module in training mode;
* on every batch, before the attack (:func:`zero_gradient_count`, uncounted): samples whose
  input gradient of the logit margin is exactly zero or not finite (gradient masking, shattered
  or saturated gradients);
* on the results: samples the attack did not fool with no budget at all (success < 100%).

:func:`flags` turns them into the flags ``summary.json``, ``report.md`` and the console show, each
with what it means and what to do.
"""

from dataclasses import dataclass
from typing import Any, Dict, List

import eagerpy as ep
import numpy as np

from .._dispatch import value_aux_and_grad
from .._runtime import model_framework, to_native
from ..constraints import logit_margin
from ..counting import torch_module_of

SIGNAL_SAMPLES = 8
"""Samples of the data the model-level signals are read on."""
STOCHASTIC_RTOL = 1e-5
"""Relative difference (of the largest output) above which two forwards are said to differ:
well above float round-off, far below what dropout or random transforms change."""
PROBABILITY_ATOL = 1e-3


@dataclass(frozen=True)
class Flag:
    """One sanity flag: a name, what was seen, what it means and what to do."""

    name: str
    seen: str
    meaning: str
    advice: str

    def as_dict(self) -> Dict[str, str]:
        return {
            "flag": self.name,
            "seen": self.seen,
            "meaning": self.meaning,
            "advice": self.advice,
        }

    def line(self) -> str:
        return f"{self.name}: {self.seen}. {self.meaning} {self.advice}"


def model_signals(fmodel: Any, x: np.ndarray) -> Dict[str, Any]:
    """Signals read from the model itself on a few inputs ``x`` (NumPy, the model's layout)."""
    native = to_native(fmodel, x)
    first = ep.astensor(fmodel(native)).numpy().astype(np.float64)
    second = ep.astensor(fmodel(native)).numpy().astype(np.float64)
    scale = max(float(np.abs(first).max(initial=0)), 1e-12)
    rows = first.reshape(len(first), -1)
    module = torch_module_of(fmodel) if model_framework(fmodel) == "pytorch" else None
    return {
        "stochastic": float(np.abs(first - second).max(initial=0)) / scale,
        "probabilities": bool(
            rows.size
            and rows.min() >= -PROBABILITY_ATOL
            and rows.max() <= 1 + PROBABILITY_ATOL
            and np.allclose(rows.sum(axis=1), 1, atol=PROBABILITY_ATOL)
        ),
        "training": bool(module is not None and _in_training(module)),
    }


def _in_training(module: Any) -> bool:
    return any(m.training for m in module.modules())


def zero_gradient_count(fmodel: Any, x: Any, classes: Any) -> int:
    """How many samples of ``x`` have a zero or non-finite input gradient of the logit margin
    ``z_c - max_{j != c} z_j`` (``classes``: labels or targets, native tensors)."""
    x, classes = ep.astensor(x), ep.astensor(classes)

    def margin(inputs: ep.Tensor) -> Any:
        return logit_margin(fmodel(inputs), classes).sum(), ()

    _, _, grad = value_aux_and_grad(margin, x)
    flat = grad.numpy().reshape(len(x), -1).astype(np.float64)
    finite = np.isfinite(flat).all(axis=1)
    zero = np.abs(np.where(np.isfinite(flat), flat, 0)).max(axis=1, initial=0) == 0
    return int((~finite | zero).sum())


def flags(
    signals: Dict[str, Any], zero_gradients: int, checked: int, failures: int, attacked: int
) -> List[Flag]:
    """The flags an evaluation raises (empty when nothing is suspicious)."""
    out: List[Flag] = []
    if signals.get("stochastic", 0) > STOCHASTIC_RTOL:
        out.append(
            Flag(
                "stochastic model",
                "two forward passes of the same inputs differ (by "
                f"{signals['stochastic']:.3g} of the largest output)",
                "The attack and the scoring see different models at every call, so distances "
                "and successes are not reproducible and may overstate robustness.",
                "Put the model in evaluation mode and fix its randomness; for a deliberately "
                "randomised defence, evaluate with an attack that averages over the randomness "
                "(EOT).",
            )
        )
    if signals.get("probabilities"):
        out.append(
            Flag(
                "probabilities instead of logits",
                "the model's outputs lie in [0, 1] and sum to 1 per sample",
                "A softmax at the end saturates: its gradients vanish for confident samples and "
                "attacks stall (gradient masking), so distances come out too large.",
                "Return the logits (drop the final softmax) for the evaluation.",
            )
        )
    if signals.get("training"):
        out.append(
            Flag(
                "PyTorch model in training mode",
                "the torch.nn.Module (or one of its submodules) has training=True",
                "Dropout and batch normalisation behave as in training: outputs are random or "
                "depend on the batch, not the model users deploy.",
                "Call net.eval() before wrapping it (fb.PyTorchModel(net.eval(), ...)).",
            )
        )
    if zero_gradients:
        out.append(
            Flag(
                "zero input gradients",
                f"{zero_gradients} of {checked} samples have a zero (or non-finite) gradient of "
                "the logit margin at the clean input",
                "Gradient-based attacks get no direction there (ALMA starts them in a random "
                "direction): gradient masking is suspected and distances may be overestimated.",
                "Check for non-differentiable layers (quantisation, argmax, clipping) or "
                "saturated outputs; confirm with another attack (e.g. --attack fmn-l2) or more "
                "steps.",
            )
        )
    if failures:
        out.append(
            Flag(
                "attack failed at an unbounded budget",
                f"no adversarial was found for {failures} of {attacked} samples",
                "Those samples count as robust at every epsilon, so robust accuracy is an upper "
                "bound that may be loose and the median may be too large.",
                "Run more steps (--steps), another attack (--attack ddn, fmn-l2, ...) or check "
                "the model for gradient masking.",
            )
        )
    return out
