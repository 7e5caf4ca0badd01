"""The attacks the benchmark knows: ours, Foolbox's baselines and the authors' adv_lib versions.

Each :class:`AttackSpec` turns a step budget into a run function and the hyperparameters it uses
(recorded with the results, and part of what a resumed run must match). Settings follow the ALMA
paper: ALMA uses ``alpha = 0.5`` for budgets up to 100 steps and ``0.9`` above, with
``init_lr_distance`` L1 0.5 / L2 0.1 (the same on both implementations); C&W and EAD run 9 binary
search steps of ``steps`` iterations each; every other hyperparameter is the library's default,
except adv_lib's DDN quantisation (``levels=None``, as every other attack here returns continuous
values) and EAD's decision rule (``"L1"``: the adversarial with the smallest L1 distance is kept,
which is what is measured). Foolbox's L2 FMN runs with its projection fixed (:class:`L2FMNAttack`:
Foolbox 3.3.4's never projects).
"""

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import eagerpy as ep
import foolbox as fb
from foolbox.devutils import atleast_kd, flatten

from .._runtime import FRAMEWORKS

RunFn = Callable[[fb.Model, Any, Any, Any], Any]
"""``run(fmodel, module, images, labels) -> adversarials`` (native tensors; ``module`` is the
PyTorch module to give attacks that call one directly, None elsewhere)."""


SOURCES = ("foolbox-alma", "foolbox", "adv_lib", "benchmark")

INSTALL_ADV_LIB = (
    "pip install torchvision 'setuptools<70' && pip install --no-build-isolation visdom && "
    "pip install --no-deps adv-lib (adv-lib's own requirements pin old versions)"
)


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the benchmark.

    Attributes:
        name: Registry key (``"alma-l2"``, ``"fmn-l1"``, ``"adv_lib-alma-l2"``...).
        label: Name in tables (``"ALMA"``, ``"FMN"``, ``"C&W"``...).
        source: Where the implementation comes from: ``"foolbox-alma"``, ``"foolbox"``,
            ``"adv_lib"``.
        distance: The distance it minimises and that is measured (``"l1"``, ``"l2"``, ...).
        build: ``steps -> (run function, hyperparameters)``.
        binary_search_steps: Outer restarts (C&W, EAD), each of ``steps`` iterations.
        frameworks: The frameworks it runs on.
        requires: A module that must be importable (None: always available).
        own_scale: ``(fmodel, images, adversarials) -> distances`` for an attack that minimises
            a distance the package does not define (adv_lib's LPIPS): its adversarials are
            measured with it on the attack's own scale. None: measured with ``distance``.
    """

    name: str
    label: str
    source: str
    distance: str
    build: Callable[[int], Tuple[RunFn, Dict[str, Any]]]
    binary_search_steps: int = 1
    frameworks: Tuple[str, ...] = FRAMEWORKS
    requires: Optional[str] = None
    own_scale: Optional[Callable[[fb.Model, Any, Any], Any]] = None

    def budget(self, steps: int) -> str:
        """The step budget as the paper prints it (``"1000"``, ``"9x100"``)."""
        if self.binary_search_steps > 1:
            return f"{self.binary_search_steps}x{steps}"
        return str(steps)

    def nominal_passes(self, steps: int) -> int:
        """Forward+backward passes per sample the budget allows."""
        return self.binary_search_steps * steps

    def available(self, framework: str) -> bool:
        if framework not in self.frameworks:
            return False
        return self.requires is None or _importable(self.requires)


def alma_alpha(steps: int) -> float:
    """The paper's EMA weight: 0.5 for its 100-step runs, 0.9 for its 1000-step runs (ALMA's
    default, :func:`foolbox_alma.alma.default_alpha`, which joins the two in between)."""
    from ..alma import default_alpha

    return default_alpha(steps)


# -- foolbox-alma ------------------------------------------------------------------------------


def _ours(
    distance: str, progress: bool = False, init_lr_distance: Optional[float] = None
) -> Callable[[int], Tuple[RunFn, Dict[str, Any]]]:
    def build(steps: int) -> Tuple[RunFn, Dict[str, Any]]:
        from ..alma import ALMA

        attack = ALMA(
            distance=distance,
            steps=steps,
            alpha=alma_alpha(steps),
            init_lr_distance=init_lr_distance,
            progress=progress,
        )
        settings = {
            "steps": steps,
            "alpha": attack.alpha,
            "init_lr_distance": attack.init_lr_distance,
            "penalty": attack.penalty.name,
            "lr_reduction": attack.lr_reduction,
            "compile": attack.compile,
        }

        def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
            return attack.run(fmodel, x, fb.criteria.Misclassification(y))

        return run, settings

    return build


# -- Foolbox -----------------------------------------------------------------------------------


def _foolbox(factory: Callable[[int], Any], settings: Callable[[int], Dict[str, Any]]) -> Any:
    def build(steps: int) -> Tuple[RunFn, Dict[str, Any]]:
        attack = factory(steps)

        def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
            return attack.run(fmodel, x, fb.criteria.Misclassification(y))

        return run, settings(steps)

    return build


def _ddn(steps: int) -> Any:
    return fb.attacks.DDNAttack(steps=steps, init_epsilon=1.0, gamma=0.05)


class L2FMNAttack(fb.attacks.L2FMNAttack):
    """Foolbox's L2 FMN with its projection onto the L2 ball of radius epsilon restored.

    In Foolbox 3.3.4, ``L2FMNAttack.project`` computes ``minimum(1, norms / norms)``, a factor of
    1: it never projects, so the attack walks away from the input in steps of the (annealed) step
    size and keeps the smallest adversarial it passes, usually the first: its median L2 on the
    colour model is exactly its first step, 1.0, at 100 and at 1000 steps. Here the perturbation
    is scaled by ``min(1, epsilon / ||delta||)``, the FMN paper's projection; everything else is
    Foolbox's.
    """

    def project(self, x: ep.Tensor, x0: ep.Tensor, epsilon: ep.Tensor) -> ep.Tensor:
        delta = x - x0
        norms = ep.maximum(flatten(delta).norms.l2(axis=-1), 1e-12)
        factor = ep.minimum(1, epsilon / norms)  # epsilon = inf (no adversarial yet): 1
        return x0 + delta * atleast_kd(factor, x.ndim)


def _fmn(norm: str) -> Callable[[int], Any]:
    cls = fb.attacks.L1FMNAttack if norm == "l1" else L2FMNAttack
    return lambda steps: cls(steps=steps)


def _cw(steps: int) -> Any:
    return fb.attacks.L2CarliniWagnerAttack(binary_search_steps=9, steps=steps)


def _ead(steps: int) -> Any:
    return fb.attacks.EADAttack(binary_search_steps=9, steps=steps, decision_rule="L1")


# -- calibration ------------------------------------------------------------------------------


def _plain(steps: int) -> Tuple[RunFn, Dict[str, Any]]:
    """``steps`` plain forward+backward passes, the floor's own computation, returning the inputs
    unchanged: its time over the floor shows the timing method's bias and noise (about 1.00 on
    PyTorch; on TensorFlow and JAX its time includes compiling the pass)."""
    from .timing import floor_pass

    def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
        one_pass = floor_pass(fmodel, x, y, warm_up=False)
        for _ in range(steps):
            one_pass()
        return x

    return run, {"steps": steps}


# -- adv_lib -----------------------------------------------------------------------------------


def _adv_lib(attack_name: str, **kwargs: Any) -> Callable[[int], Tuple[RunFn, Dict[str, Any]]]:
    def build(steps: int) -> Tuple[RunFn, Dict[str, Any]]:
        import adv_lib.attacks

        attack = getattr(adv_lib.attacks, attack_name)
        options = dict(kwargs)
        if attack_name == "alma":
            options.update(num_steps=steps, α=alma_alpha(steps))
        else:
            options.update(steps=steps)

        def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
            if module is None:
                raise ValueError("adv_lib attacks need a PyTorch model")
            return attack(module, x, y, **options).detach()

        settings = {("alpha" if k == "α" else k): v for k, v in options.items()}
        return run, settings

    return build


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


ATTACKS: Dict[str, AttackSpec] = {
    spec.name: spec
    for spec in [
        AttackSpec("alma-l1", "ALMA", "foolbox-alma", "l1", _ours("l1")),
        AttackSpec("fmn-l1", "FMN", "foolbox", "l1", _foolbox(_fmn("l1"), lambda s: {"steps": s})),
        AttackSpec(
            "ead",
            "EAD",
            "foolbox",
            "l1",
            _foolbox(_ead, lambda s: {"steps": s, "binary_search_steps": 9, "decision_rule": "L1"}),
            binary_search_steps=9,
        ),
        AttackSpec(
            "adv_lib-alma-l1",
            "ALMA",
            "adv_lib",
            "l1",
            _adv_lib("alma", distance="l1", init_lr_distance=0.5),
            frameworks=("pytorch",),
            requires="adv_lib",
        ),
        AttackSpec(
            "adv_lib-fmn-l1",
            "FMN",
            "adv_lib",
            "l1",
            _adv_lib("fmn", norm=1),
            frameworks=("pytorch",),
            requires="adv_lib",
        ),
        AttackSpec("alma-l2", "ALMA", "foolbox-alma", "l2", _ours("l2")),
        AttackSpec(
            "ddn",
            "DDN",
            "foolbox",
            "l2",
            _foolbox(_ddn, lambda s: {"steps": s, "init_epsilon": 1.0, "gamma": 0.05}),
        ),
        AttackSpec(
            "fmn-l2",
            "FMN (projection fixed)",
            "foolbox",
            "l2",
            # Foolbox's attack with its L2 projection fixed (L2FMNAttack above)
            _foolbox(_fmn("l2"), lambda s: {"steps": s, "projection": "l2 ball (fixed)"}),
        ),
        AttackSpec(
            "cw-l2",
            "C&W",
            "foolbox",
            "l2",
            _foolbox(_cw, lambda s: {"steps": s, "binary_search_steps": 9}),
            binary_search_steps=9,
        ),
        AttackSpec(
            "adv_lib-alma-l2",
            "ALMA",
            "adv_lib",
            "l2",
            _adv_lib("alma", distance="l2", init_lr_distance=0.1),
            frameworks=("pytorch",),
            requires="adv_lib",
        ),
        AttackSpec(
            "adv_lib-ddn",
            "DDN",
            "adv_lib",
            "l2",
            _adv_lib("ddn", levels=None),
            frameworks=("pytorch",),
            requires="adv_lib",
        ),
        AttackSpec(
            "adv_lib-fmn-l2",
            "FMN",
            "adv_lib",
            "l2",
            _adv_lib("fmn", norm=2),
            frameworks=("pytorch",),
            requires="adv_lib",
        ),
    ]
}
"""Every attack, L1 ones first (the order of the paper's tables)."""

ATTACKS["plain"] = AttackSpec("plain", "Plain passes", "benchmark", "none", _plain)
"""Calibration: no attack, just the floor's passes (select it explicitly: ``--attacks all,plain``)."""

LP_DISTANCES = ("l1", "l2")
PERCEPTUAL = {"ciede2000": 0.05, "ssim": 1e-4, "msssim": 1e-4, "lpips": 0.01}
"""Perceptual distances and the paper's ``init_lr_distance`` (CIEDE2000: its CIFAR10 value, on
adv_lib's scale; MS-SSIM: SSIM's), which adv_lib's ALMA rows use."""

ADV_LIB_SCALES = ("ciede2000-adv_lib", "lpips-adv_lib")
"""Distances of adv_lib's ALMA that differ from the standard ones: its CIEDE2000 (about 4x
smaller, ``CIEDE2000(adv_lib_scale=True)``) and its LPIPS (no linear weights)."""

STANDARD_RULER = {"ciede2000-adv_lib": "ciede2000", "lpips-adv_lib": "lpips"}
"""The standard distance each adv_lib scale is compared on."""


def _distance_available(name: str) -> bool:
    try:
        from ..distances import get_distance

        get_distance(name)
        if name == "lpips":  # AlexNet weights are read at first use: check they are there
            import os

            from ..distances import default_alexnet_path

            return os.path.exists(default_alexnet_path())
    except (ValueError, ImportError, OSError):
        return False
    return True


def _adv_lib_lpips(fmodel: fb.Model, x: Any, adv: Any) -> Any:
    """adv_lib's LPIPS (AlexNet from torchvision's cache, no linear weights), as its ALMA
    minimises it: the attack's own scale."""
    import torch
    from adv_lib.distances.lpips import LPIPS as AdvLibLPIPS

    x, adv = torch.as_tensor(x), torch.as_tensor(adv)
    with torch.no_grad():
        return AdvLibLPIPS(target=x).to(x.device)(adv).double().cpu().numpy()


for _name in PERCEPTUAL:
    if _distance_available(_name):
        ATTACKS[f"alma-{_name}"] = AttackSpec(
            f"alma-{_name}", "ALMA", "foolbox-alma", _name, _ours(_name)
        )
# adv_lib's ALMA on the same distances, each with the paper's init_lr_distance. Its SSIM and
# MS-SSIM match ours (SSIM: scikit-image's to 7 digits); its CIEDE2000 is
# CIEDE2000(adv_lib_scale=True); its LPIPS has no linear layers (own_scale measures it).
for _name, _scale in (
    ("ciede2000", "ciede2000-adv_lib"),
    ("ssim", "ssim"),
    ("msssim", "msssim"),
    ("lpips", "lpips-adv_lib"),
):
    if _distance_available(_name):
        ATTACKS[f"adv_lib-alma-{_name}"] = AttackSpec(
            f"adv_lib-alma-{_name}",
            "ALMA",
            "adv_lib",
            _scale,
            _adv_lib("alma", distance=_name, init_lr_distance=PERCEPTUAL[_name]),
            frameworks=("pytorch",),
            requires="adv_lib",
            own_scale=_adv_lib_lpips if _name == "lpips" else None,
        )

GROUPS = {
    "all": lambda spec: spec.distance in LP_DISTANCES,
    # (MS-SSIM, which needs images of at least 161 x 161, is selected by name only)
    "perceptual": lambda spec: (
        spec.distance in PERCEPTUAL and spec.distance != "msssim" or spec.distance in ADV_LIB_SCALES
    ),
    "l1": lambda spec: spec.distance == "l1",
    "l2": lambda spec: spec.distance == "l2",
    "alma": lambda spec: "alma" in spec.name and spec.distance in LP_DISTANCES,
    "ours": lambda spec: spec.source == "foolbox-alma" and spec.distance in LP_DISTANCES,
    "foolbox": lambda spec: spec.source == "foolbox",
    "adv_lib": lambda spec: spec.source == "adv_lib" and spec.distance in LP_DISTANCES,
}
"""Names that select several attacks in ``--attacks`` ("all": the L1 and L2 attacks)."""


def register(spec: AttackSpec) -> None:
    """Adds (or replaces) an attack, e.g. ALMA with another distance."""
    ATTACKS[spec.name] = spec


def register_alma_distance(
    distance: str,
    progress: bool = False,
    init_lr_distance: Optional[float] = None,
    name: Optional[str] = None,
    label: str = "ALMA",
) -> AttackSpec:
    """Registers ALMA with a distance known to :func:`foolbox_alma.distances.get_distance`
    (as ``alma-<distance>``, or ``name``), with the distance's ``init_lr_distance`` or the one
    given (then name it: ``register_alma_distance("lpips", init_lr_distance=1e-5,
    name="alma-lpips-1e-5", label="ALMA (1e-5)")``)."""
    spec = AttackSpec(
        name or f"alma-{distance}",
        label,
        "foolbox-alma",
        distance,
        _ours(distance, progress, init_lr_distance),
    )
    register(spec)
    return spec


def select(names: Optional[Sequence[str]], framework: str) -> List[AttackSpec]:
    """The attacks named (registry keys or ``GROUPS``), in registry order.

    None selects every attack available on ``framework``. Naming an attack that cannot run here
    (an adv_lib attack without adv_lib, or off PyTorch) raises ValueError; a group silently
    skips those.
    """
    names = ["all"] if not names else list(names)
    chosen: Set[str] = set()
    for name in names:
        if name in GROUPS:
            chosen.update(s.name for s in ATTACKS.values() if GROUPS[name](s))
            continue
        if name.startswith("alma-") and name not in ATTACKS:
            _register_known_distance(name[len("alma-") :])
        if name not in ATTACKS:
            raise ValueError(
                f"unknown attack {name!r}; attacks: {', '.join(ATTACKS)}; groups: "
                f"{', '.join(GROUPS)}"
            )
        spec = ATTACKS[name]
        if not spec.available(framework):
            why = (
                f"runs on {', '.join(spec.frameworks)} only"
                if framework not in spec.frameworks
                else f"needs {spec.requires}: {INSTALL_ADV_LIB}"
            )
            raise ValueError(f"attack {name!r} {why}")
        chosen.add(name)
    return [s for s in ATTACKS.values() if s.name in chosen and s.available(framework)]


def _register_known_distance(distance: str) -> None:
    from ..distances import get_distance

    try:
        get_distance(distance)
    except ValueError:
        return
    register_alma_distance(distance)
