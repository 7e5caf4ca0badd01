"""foolbox-alma: ALMA (Rony et al., ICCV 2021) for Foolbox, written once in EagerPy.

Example::

    import foolbox as fb, foolbox_alma
    fmodel = fb.PyTorchModel(net.eval(), bounds=(0, 1))   # or fb.TensorFlowModel / fb.JAXModel
    raw, clipped, success = foolbox_alma.ALMA(distance="l2")(fmodel, x, y)
"""

from . import constraints, distances, optim, penalties
from ._version import __version__
from .alma import ALMA
from .constraints import dlr_plus, targeted_dlr_plus
from .evaluation import EvaluationResult, evaluate
from .penalties import Penalty, get_penalty

__all__ = [
    "ALMA",
    "EvaluationResult",
    "Penalty",
    "constraints",
    "distances",
    "dlr_plus",
    "evaluate",
    "get_penalty",
    "optim",
    "penalties",
    "targeted_dlr_plus",
    "__version__",
]
