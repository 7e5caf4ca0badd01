"""The attacks the pipeline runs, declared in one table: ALMA and its peers.

* :data:`ATTACKS` declares every attack by name: ALMA on each distance (``alma-l1``, ``alma-l2``,
  ``alma-ciede2000``...), Foolbox's DDN, FMN (L1, and L2 with its projection fixed), C&W and EAD,
  the authors' adv_lib ALMA, DDN and FMN. Whether one can run here (its framework, adv-lib
  installed, the LPIPS weights on disk) is asked when it is selected, never when this module is
  imported. :func:`register` adds attacks explicitly; nothing else changes the table.
* :class:`AttackConfig` is the picklable description of what to run, which a worker process
  rebuilds: ALMA with keyword arguments, a registry name at a step budget, or any Foolbox
  ``MinimizationAttack`` object. :meth:`AttackConfig.build` turns it into a :class:`BuiltAttack`
  for one framework: a run function with one signature for every kind, the distance its points
  are measured in, and the settings recorded with the results (and matched by a resumed run).

Settings follow the ALMA paper: ALMA's ``alpha`` follows the budget (0.5 for 100 steps, 0.9 for
1000; :func:`foolbox_alma.alma.default_alpha`) and ``init_lr_distance`` is the distance's default on
both implementations where they share a scale; C&W and EAD run 9 binary search steps of ``steps``
iterations each; every other hyperparameter is the library's default, except adv_lib's DDN
quantisation (``levels=None``, as every other attack here returns continuous values) and EAD's
decision rule (``"L1"``: the adversarial with the smallest L1 distance is kept, which is what is
measured). Foolbox's L2 FMN runs with its projection fixed (:class:`L2FMNAttack`).
"""

import importlib.util
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import eagerpy as ep
import foolbox as fb
from foolbox.attacks.base import MinimizationAttack
from foolbox.devutils import atleast_kd, flatten

from ._runtime import FRAMEWORKS
from .alma import ALMA, default_alpha
from .distances import FirstStep, default_alexnet_path, get_distance
from .distances.ciede2000 import PAPER_INIT_LR_DISTANCE
from .timing import floor_pass

RunFn = Callable[[fb.Model, Any, Any, Any, bool], Any]
"""``run(fmodel, module, images, classes, targeted) -> adversarials`` on native tensors:
``classes`` are labels, or target classes when ``targeted``; ``module`` is the PyTorch module for
attacks that call one directly (None elsewhere)."""

UntargetedRunFn = Callable[[fb.Model, Any, Any, Any], Any]
"""``run(fmodel, module, images, labels) -> adversarials``: an untargeted attack's run."""

Builder = Callable[[int], Tuple[Any, Dict[str, Any]]]
"""``steps -> (run function, settings)`` of one registry entry: a :data:`RunFn` for a spec
with ``targeted=True``, an :data:`UntargetedRunFn` otherwise."""

SOURCES = ("foolbox-alma", "foolbox", "adv_lib", "benchmark")

INSTALL_ADV_LIB = (
    "pip install torchvision 'setuptools<70' && pip install --no-build-isolation visdom && "
    "pip install --no-deps adv-lib (adv-lib's own requirements pin old versions)"
)


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the registry.

    Attributes:
        name: Registry key (``"alma-l2"``, ``"fmn-l1"``, ``"adv_lib-alma-l2"``...).
        label: Name in tables (``"ALMA"``, ``"FMN"``, ``"C&W"``...).
        source: Where the implementation comes from (:data:`SOURCES`).
        distance: The distance it minimises and that is measured (``"l1"``, ``"l2"``, ...).
        build: ``steps -> (run function, settings)``; the run function takes
            ``(fmodel, module, images, labels)``, or with ``targeted`` also ``targeted`` (and
            target classes instead of labels when it is True).
        binary_search_steps: Outer restarts (C&W, EAD), each of ``steps`` iterations.
        frameworks: The frameworks it runs on.
        requires: A module that must be importable (None: always available).
        needs_file: A function returning a file that must exist (the LPIPS weights), or None.
        own_scale: ``(fmodel, images, adversarials) -> distances`` for an attack that minimises
            a distance the package does not define (adv_lib's LPIPS): its adversarials are
            measured with it on the attack's own scale. None: measured with ``distance``.
        targeted: Whether it runs targeted too (ALMA only).
    """

    name: str
    label: str
    source: str
    distance: str
    build: Builder
    binary_search_steps: int = 1
    frameworks: Tuple[str, ...] = FRAMEWORKS
    requires: Optional[str] = None
    needs_file: Optional[Callable[[], str]] = None
    own_scale: Optional[Callable[[fb.Model, Any, Any], Any]] = None
    targeted: bool = False

    def budget(self, steps: int) -> str:
        """The step budget as the paper prints it (``"1000"``, ``"9x100"``)."""
        if self.binary_search_steps > 1:
            return f"{self.binary_search_steps}x{steps}"
        return str(steps)

    def nominal_passes(self, steps: int) -> int:
        """Forward+backward passes per sample the budget allows."""
        return self.binary_search_steps * steps

    def unavailable(self, framework: str) -> Optional[str]:
        """Why the attack cannot run on ``framework`` here, or None when it can."""
        if framework not in self.frameworks:
            return f"runs on {', '.join(self.frameworks)} only"
        if self.requires is not None and not _importable(self.requires):
            return f"needs {self.requires}: {INSTALL_ADV_LIB}"
        if self.needs_file is not None and not os.path.exists(self.needs_file()):
            return f"needs the file {self.needs_file()} (see the README's LPIPS section)"
        return None

    def available(self, framework: str) -> bool:
        return self.unavailable(framework) is None


# -- run functions -----------------------------------------------------------------------------


def minimization_run(attack: MinimizationAttack) -> RunFn:
    """The run function of a Foolbox minimisation attack (targeted with target classes)."""

    def run(fmodel: fb.Model, module: Any, x: Any, classes: Any, targeted: bool) -> Any:
        criterion = (
            fb.criteria.TargetedMisclassification(classes)
            if targeted
            else fb.criteria.Misclassification(classes)
        )
        return attack.run(fmodel, x, criterion)

    return run


def _untargeted(name: str, run: UntargetedRunFn) -> RunFn:
    def checked(fmodel: fb.Model, module: Any, x: Any, classes: Any, targeted: bool) -> Any:
        if targeted:
            raise ValueError(f"attack {name!r} of the registry is untargeted only")
        return run(fmodel, module, x, classes)

    return checked


def _alma(distance: str, **fixed: Any) -> Builder:
    """ALMA on ``distance`` with its defaults (``alpha`` following the budget), or ``fixed``."""

    def build(steps: int) -> Tuple[Any, Dict[str, Any]]:
        attack = ALMA(distance=distance, steps=steps, **fixed)
        return minimization_run(attack), attack.settings.record()

    return build


def _foolbox(factory: Callable[[int], Any], settings: Callable[[int], Dict]) -> Builder:
    def build(steps: int) -> Tuple[Any, Dict[str, Any]]:
        attack = factory(steps)

        def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
            return attack.run(fmodel, x, fb.criteria.Misclassification(y))

        return run, settings(steps)

    return build


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


def _plain(steps: int) -> Tuple[Any, Dict[str, Any]]:
    """``steps`` plain forward+backward passes, the floor's own computation, returning the inputs
    unchanged: its time over the floor shows the timing method's bias and noise (about 1.00 on
    PyTorch; on TensorFlow and JAX its time includes compiling the pass)."""

    def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
        one_pass = floor_pass(fmodel, x, y, warm_up=False)
        for _ in range(steps):
            one_pass()
        return x

    return run, {"steps": steps}


def _adv_lib(attack_name: str, **kwargs: Any) -> Builder:
    def build(steps: int) -> Tuple[Any, Dict[str, Any]]:
        import adv_lib.attacks

        attack = getattr(adv_lib.attacks, attack_name)
        options = dict(kwargs)
        if attack_name == "alma":
            options.update(num_steps=steps, α=default_alpha(steps))
        else:
            options.update(steps=steps)

        def run(fmodel: fb.Model, module: Any, x: Any, y: Any) -> Any:
            if module is None:
                raise ValueError("adv_lib attacks need a PyTorch model")
            return attack(module, x, y, **options).detach()

        settings = {("alpha" if k == "α" else k): v for k, v in options.items()}
        return run, settings

    return build


def _adv_lib_lpips(fmodel: fb.Model, x: Any, adv: Any) -> Any:
    """adv_lib's LPIPS (AlexNet from torchvision's cache, no linear weights), as its ALMA
    minimises it: the attack's own scale."""
    import torch
    from adv_lib.distances.lpips import LPIPS as AdvLibLPIPS

    x, adv = torch.as_tensor(x), torch.as_tensor(adv)
    with torch.no_grad():
        return AdvLibLPIPS(target=x).to(x.device)(adv).double().cpu().numpy()


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- the table ---------------------------------------------------------------------------------

LP_DISTANCES = ("l1", "l2")
PERCEPTUAL = {"ciede2000": PAPER_INIT_LR_DISTANCE, "ssim": 1e-4, "msssim": 1e-4, "lpips": 0.01}
"""Perceptual distances and the paper's ``init_lr_distance`` (CIEDE2000: its CIFAR10 value, on
adv_lib's scale; MS-SSIM: SSIM's), which adv_lib's ALMA rows use."""

ADV_LIB_SCALES = ("ciede2000-adv_lib", "lpips-adv_lib")
"""Distances of adv_lib's ALMA that differ from the standard ones: its CIEDE2000 (about 4x
smaller, ``CIEDE2000(adv_lib_scale=True)``) and its LPIPS (no linear weights)."""

STANDARD_RULER = {"ciede2000-adv_lib": "ciede2000", "lpips-adv_lib": "lpips"}
"""The standard distance each adv_lib scale is compared on."""

_ADV_LIB_ALMA_SCALES = {
    "l1": "l1",
    "l2": "l2",
    "ciede2000": "ciede2000-adv_lib",
    "ssim": "ssim",  # adv_lib's SSIM and MS-SSIM are ours (SSIM: scikit-image's to 7 digits)
    "msssim": "msssim",
    "lpips": "lpips-adv_lib",
}
_LP_INIT = {"l1": 0.5, "l2": 0.1}


def _lpips_file(distance: str) -> Optional[Callable[[], str]]:
    return default_alexnet_path if distance == "lpips" else None


def _declare() -> List[AttackSpec]:
    specs: List[AttackSpec] = []
    adv_lib: Dict[str, Any] = {"frameworks": ("pytorch",), "requires": "adv_lib"}

    def foolbox(
        name: str, label: str, distance: str, factory: Any, settings: Any, bs: int = 1
    ) -> AttackSpec:
        return AttackSpec(name, label, "foolbox", distance, _foolbox(factory, settings), bs)

    specs += [
        AttackSpec("alma-l1", "ALMA", "foolbox-alma", "l1", _alma("l1"), targeted=True),
        foolbox("fmn-l1", "FMN", "l1", lambda s: fb.attacks.L1FMNAttack(steps=s), _steps),
        foolbox(
            "ead", "EAD", "l1",
            lambda s: fb.attacks.EADAttack(binary_search_steps=9, steps=s, decision_rule="L1"),
            lambda s: {"steps": s, "binary_search_steps": 9, "decision_rule": "L1"}, 9,
        ),
        AttackSpec("adv_lib-alma-l1", "ALMA", "adv_lib", "l1",
                   _adv_lib("alma", distance="l1", init_lr_distance=0.5),
                   **adv_lib),
        AttackSpec("adv_lib-fmn-l1", "FMN", "adv_lib", "l1",
                   _adv_lib("fmn", norm=1), **adv_lib),
        AttackSpec("alma-l2", "ALMA", "foolbox-alma", "l2", _alma("l2"), targeted=True),
        foolbox(
            "ddn", "DDN", "l2",
            lambda s: fb.attacks.DDNAttack(steps=s, init_epsilon=1.0, gamma=0.05),
            lambda s: {"steps": s, "init_epsilon": 1.0, "gamma": 0.05},
        ),
        # Foolbox's attack with its L2 projection fixed (L2FMNAttack above)
        foolbox("fmn-l2", "FMN (projection fixed)", "l2", lambda s: L2FMNAttack(steps=s),
                lambda s: {"steps": s, "projection": "l2 ball (fixed)"}),
        foolbox("cw-l2", "C&W", "l2",
                lambda s: fb.attacks.L2CarliniWagnerAttack(binary_search_steps=9, steps=s),
                lambda s: {"steps": s, "binary_search_steps": 9}, 9),
        AttackSpec("adv_lib-alma-l2", "ALMA", "adv_lib", "l2",
                   _adv_lib("alma", distance="l2", init_lr_distance=0.1),
                   **adv_lib),
        AttackSpec("adv_lib-ddn", "DDN", "adv_lib", "l2",
                   _adv_lib("ddn", levels=None), **adv_lib),
        AttackSpec("adv_lib-fmn-l2", "FMN", "adv_lib", "l2",
                   _adv_lib("fmn", norm=2), **adv_lib),
    ]  # fmt: skip
    for distance in PERCEPTUAL:
        specs.append(
            AttackSpec(f"alma-{distance}", "ALMA", "foolbox-alma", distance, _alma(distance),
                       needs_file=_lpips_file(distance), targeted=True)
        )  # fmt: skip
    for distance, scale in _ADV_LIB_ALMA_SCALES.items():
        if distance in LP_DISTANCES:
            continue
        name = f"adv_lib-alma-{distance}"
        build = _adv_lib("alma", distance=distance, init_lr_distance=PERCEPTUAL[distance])
        specs.append(
            AttackSpec(name, "ALMA", "adv_lib", scale, build, needs_file=_lpips_file(distance),
                       own_scale=_adv_lib_lpips if distance == "lpips" else None, **adv_lib)
        )  # fmt: skip
    specs.append(AttackSpec("plain", "Plain passes", "benchmark", "none", _plain))
    return specs


def _steps(steps: int) -> Dict[str, Any]:
    return {"steps": steps}


ATTACKS: Dict[str, AttackSpec] = {spec.name: spec for spec in _declare()}
"""Every attack, L1 ones first (the order of the paper's tables); ``plain`` is the benchmark's
calibration (the floor's own passes: select it by name, ``--attacks all,plain``)."""

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
"""Names that select several attacks (``--attacks``; "all": the L1 and L2 attacks). A group
skips the attacks that cannot run here."""


def register(spec: AttackSpec) -> AttackSpec:
    """Adds (or replaces) an attack of the table, e.g. ALMA with another setting."""
    ATTACKS[spec.name] = spec
    return spec


def register_alma_distance(distance: str, **options: Any) -> AttackSpec:
    """Registers ALMA with a distance known to :func:`foolbox_alma.distances.get_distance`:
    :func:`alma_spec`'s entry, added to the table (e.g. ``register_alma_distance("lpips",
    init_lr_distance=1e-5, name="alma-lpips-1e-5", label="ALMA (1e-5)")``)."""
    get_distance(distance)  # an unknown name is an error naming the valid ones
    return register(alma_spec(distance, **options))


def alma_spec(
    distance: str,
    progress: bool = False,
    init_lr_distance: Optional[FirstStep] = None,
    name: Optional[str] = None,
    label: str = "ALMA",
) -> AttackSpec:
    """ALMA on ``distance`` as a registry entry (not added to the table): named
    ``alma-<distance>`` or ``name``, with the distance's ``init_lr_distance`` or the one given."""
    fixed: Dict[str, Any] = {"progress": progress} if progress else {}
    if init_lr_distance is not None:
        fixed["init_lr_distance"] = init_lr_distance
    return AttackSpec(
        name or f"alma-{distance}",
        label,
        "foolbox-alma",
        distance,
        _alma(distance, **fixed),
        needs_file=_lpips_file(distance),
        targeted=True,
    )


def lookup(name: str) -> AttackSpec:
    """The attack of the table named ``name``; ``alma-<distance>`` for any distance name of
    :func:`~foolbox_alma.distances.get_distance` (not added to the table)."""
    if name in ATTACKS:
        return ATTACKS[name]
    if name.startswith("alma-"):
        try:
            get_distance(name[len("alma-") :])
        except ValueError:
            pass
        else:
            return alma_spec(name[len("alma-") :])
    raise ValueError(
        f"unknown attack {name!r}; attacks: {', '.join(ATTACKS)}; groups: {', '.join(GROUPS)}"
    )


def select(names: Optional[Sequence[str]], framework: str) -> List[AttackSpec]:
    """The attacks named (registry keys or :data:`GROUPS`), in table order.

    None selects every L1 and L2 attack available on ``framework``. Naming an attack that cannot
    run here (an adv_lib attack without adv_lib, or off PyTorch) raises ValueError; a group
    silently skips those.
    """
    names = ["all"] if not names else list(names)
    chosen: Set[str] = set()
    extra: List[AttackSpec] = []
    for name in names:
        if name in GROUPS:
            chosen.update(s.name for s in ATTACKS.values() if GROUPS[name](s))
            continue
        spec = lookup(name)
        why = spec.unavailable(framework)
        if why is not None:
            raise ValueError(f"attack {name!r} {why}")
        if spec.name in ATTACKS:
            chosen.add(spec.name)
        elif spec.name not in {s.name for s in extra}:
            extra.append(spec)
    table = [s for s in ATTACKS.values() if s.name in chosen and s.available(framework)]
    return table + extra


# -- what workers rebuild ----------------------------------------------------------------------


@dataclass
class BuiltAttack:
    """An attack ready to run on one framework."""

    run: RunFn
    distance: Any  # what is measured: a name ("l1", "l2", "none"...) or an AttackDistance
    distance_name: str
    settings: Dict[str, Any]  # JSON-able: recorded with the results, matched on resume
    supports_targeted: bool
    own_scale: Optional[Callable[[fb.Model, Any, Any], Any]] = None


@dataclass(frozen=True)
class AttackConfig:
    """What to attack with, in a form a worker process can rebuild (see the module docstring).

    ``name`` is ``"alma"`` (ALMA with ``params`` as keyword arguments), a registry name (with
    ``params`` holding ``steps``), or ``"object:<class>"`` for a Foolbox attack object (sent to
    workers pickled).
    """

    name: str = "alma"
    params: Tuple[Tuple[str, Any], ...] = ()
    attack: Any = field(default=None, compare=False)

    @classmethod
    def alma(cls, **params: Any) -> "AttackConfig":
        """ALMA with these keyword arguments (None values take ALMA's defaults)."""
        config = cls("alma", tuple(sorted((k, v) for k, v in params.items() if v is not None)))
        ALMA(**dict(config.params))  # bad settings fail here, in the caller's process
        return config

    @classmethod
    def registry(cls, name: str, steps: int) -> "AttackConfig":
        """An attack of the registry at a step budget."""
        lookup(name)  # an unknown name fails here
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        return cls(name, (("steps", int(steps)),))

    @classmethod
    def of_spec(cls, spec: AttackSpec, steps: int) -> "AttackConfig":
        """An attack spec at a step budget, registered or not (this process only: a spec that
        is not in the table is not rebuilt by a worker)."""
        config = cls.registry(spec.name, steps) if spec.name in ATTACKS else None
        if config is not None and ATTACKS[spec.name] is spec:
            return config
        return cls(spec.name, (("steps", int(steps)),), spec)

    @classmethod
    def of(cls, attack: Any) -> "AttackConfig":
        """A Foolbox minimisation attack object."""
        if not isinstance(attack, MinimizationAttack):
            raise TypeError(
                "attack must be 'alma', a name of the registry or a Foolbox MinimizationAttack, "
                f"got {type(attack).__name__}"
            )
        return cls(f"object:{type(attack).__module__}.{type(attack).__qualname__}", (), attack)

    @property
    def steps(self) -> Optional[int]:
        return dict(self.params).get("steps")

    def build(self, framework: str) -> BuiltAttack:
        """The run function, measured distance and settings on ``framework``."""
        if self.name == "alma":
            alma = ALMA(**dict(self.params))
            record = alma.settings.record()
            return BuiltAttack(
                minimization_run(alma), alma.distance, alma.distance.name, record, True
            )
        if self.attack is not None and not isinstance(self.attack, AttackSpec):
            distance = foolbox_distance_name(self.attack)
            return BuiltAttack(
                minimization_run(self.attack),
                getattr(self.attack, "distance", distance) if distance == "custom" else distance,
                distance,
                {"class": self.name[len("object:") :], **jsonable(_public(self.attack))},
                True,
            )
        spec = self.attack if isinstance(self.attack, AttackSpec) else lookup(self.name)
        why = spec.unavailable(framework)
        if why is not None:
            raise ValueError(f"attack {self.name!r} {why}")
        run, settings = spec.build(int(dict(self.params)["steps"]))
        return BuiltAttack(
            run if spec.targeted else _untargeted(spec.name, run),
            "none" if spec.own_scale is not None else spec.distance,
            spec.distance,
            {"attack": spec.name, **jsonable(settings)},
            spec.targeted,
            spec.own_scale,
        )


AttackLike = Union[str, AttackConfig, MinimizationAttack, None]


def attack_config(
    attack: AttackLike = None, steps: Optional[int] = None, **alma_params: Any
) -> AttackConfig:
    """Normalises what a user gives as the attack (see :func:`foolbox_alma.evaluate`)."""
    if isinstance(attack, AttackConfig):
        return attack
    if attack is None or attack == "alma":
        return AttackConfig.alma(steps=steps, **alma_params)
    if isinstance(attack, str):
        given = {k: v for k, v in alma_params.items() if v is not None}
        if given:
            raise ValueError(
                f"ALMA's settings ({', '.join(sorted(given))}) were given with attack {attack!r}"
            )
        return AttackConfig.registry(attack, 1000 if steps is None else steps)
    return AttackConfig.of(attack)


def foolbox_distance_name(attack: Any) -> str:
    """``"l1"``, ``"l2"``, ``"linf"``, a distance's own name, or ``"custom"``."""
    distance = getattr(attack, "distance", None)
    p = getattr(distance, "p", None)
    if p == 1:
        return "l1"
    if p == 2:
        return "l2"
    if p == float("inf"):
        return "linf"
    name = getattr(distance, "name", None)
    return name if isinstance(name, str) else "custom"


def _public(attack: Any) -> Dict[str, Any]:
    return {k: v for k, v in vars(attack).items() if not k.startswith("_")}


def jsonable(value: Any) -> Any:
    """``value`` with everything JSON cannot hold replaced by its ``repr``."""
    return json.loads(json.dumps(value, default=repr))
