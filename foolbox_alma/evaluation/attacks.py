"""What the evaluation attacks with, in a form a worker process can rebuild.

An :class:`AttackConfig` is one of

* ALMA with keyword arguments (the default: ``AttackConfig.alma(distance="l2", steps=1000)``);
* a name of the benchmark's registry (``"ddn"``, ``"fmn-l1"``, ``"adv_lib-alma-l2"``...,
  :data:`foolbox_alma.bench.attacks.ATTACKS`) with a step budget;
* any Foolbox :class:`~foolbox.attacks.base.MinimizationAttack` object (sent to workers pickled).

:func:`build` turns it, once the model's framework is known, into a :class:`BuiltAttack`: a run
function with one signature for all three kinds, the distance that is measured, and the settings
recorded with the results (and matched by a resumed run).
"""

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple, Union

import foolbox as fb

RunBatch = Callable[[fb.Model, Any, Any, Any, bool], Any]
"""``run(fmodel, module, images, classes, targeted) -> adversarials`` on native tensors;
``classes`` are labels, or target classes when ``targeted``; ``module`` is the PyTorch module for
attacks that call one directly (None elsewhere)."""

ALMA_SETTINGS = (
    "steps",
    "lr_init",
    "lr_reduction",
    "init_lr_distance",
    "mu_init",
    "rho_init",
    "check_steps",
    "tau",
    "gamma",
    "alpha",
    "alpha_rms",
    "momentum",
    "logit_tolerance",
    "levels",
    "compile",
)


@dataclass(frozen=True)
class AttackConfig:
    """An attack to rebuild in a worker (see the module docstring)."""

    name: str = "alma"
    params: Tuple[Tuple[str, Any], ...] = ()
    attack: Any = field(default=None, compare=False)

    @classmethod
    def alma(cls, **params: Any) -> "AttackConfig":
        """ALMA with these keyword arguments (None values take ALMA's defaults)."""
        kept = tuple(sorted((k, v) for k, v in params.items() if v is not None))
        config = cls("alma", kept)
        config.build_alma()  # bad settings fail here, in the caller's process
        return config

    @classmethod
    def registry(cls, name: str, steps: int) -> "AttackConfig":
        """An attack of the benchmark's registry at a step budget."""
        from ..bench.attacks import ATTACKS, GROUPS

        if name not in ATTACKS and not name.startswith("alma-"):
            raise ValueError(
                f"unknown attack {name!r}; use 'alma' or one of: {', '.join(ATTACKS)}"
                + (f" (groups such as {', '.join(GROUPS)} select several)" if GROUPS else "")
            )
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        return cls(name, (("steps", int(steps)),))

    @classmethod
    def of(cls, attack: Any) -> "AttackConfig":
        """A Foolbox minimisation attack object."""
        from foolbox.attacks.base import MinimizationAttack

        if not isinstance(attack, MinimizationAttack):
            raise TypeError(
                "attack must be 'alma', a name of the benchmark's registry or a Foolbox "
                f"MinimizationAttack, got {type(attack).__name__}"
            )
        return cls(f"object:{type(attack).__module__}.{type(attack).__qualname__}", (), attack)

    def build_alma(self) -> Any:
        from ..alma import ALMA

        return ALMA(**dict(self.params))


@dataclass
class BuiltAttack:
    """An attack ready to run on one framework."""

    run: RunBatch
    distance: Any  # a name ("l1", "l2", "linf", "ciede2000"...) or an AttackDistance object
    distance_name: str
    settings: Dict[str, Any]
    supports_targeted: bool


def build(config: AttackConfig, framework: str) -> BuiltAttack:
    """The run function, measured distance and settings of ``config`` on ``framework``."""
    if config.name == "alma":
        attack = config.build_alma()
        return BuiltAttack(
            _minimization_run(attack),
            attack.distance,
            attack.distance.name,
            alma_settings(attack),
            True,
        )
    if config.attack is not None:
        attack = config.attack
        distance = _foolbox_distance_name(attack)
        return BuiltAttack(
            _minimization_run(attack),
            getattr(attack, "distance", distance) if distance == "custom" else distance,
            distance,
            {"class": config.name[len("object:") :], **_public_attributes(attack)},
            True,
        )
    from ..bench.attacks import select

    spec = select([config.name], framework)[0]
    steps = dict(config.params)["steps"]
    registry_run, settings = spec.build(steps)

    def run(fmodel: fb.Model, module: Any, x: Any, classes: Any, targeted: bool) -> Any:
        if targeted:
            raise ValueError(f"attack {config.name!r} of the registry is untargeted only")
        return registry_run(fmodel, module, x, classes)

    return BuiltAttack(
        run, spec.distance, spec.distance, {"attack": spec.name, **_jsonable(settings)}, False
    )


def alma_settings(attack: Any) -> Dict[str, Any]:
    """Every setting of an ALMA object that changes its result (JSON-able)."""
    settings: Dict[str, Any] = {"attack": "ALMA", "distance": repr(attack.distance)}
    settings["penalty"] = attack.penalty.name
    for name in ALMA_SETTINGS:
        settings[name] = getattr(attack, name)
    return _jsonable(settings)


def _minimization_run(attack: Any) -> RunBatch:
    def run(fmodel: fb.Model, module: Any, x: Any, classes: Any, targeted: bool) -> Any:
        criterion = (
            fb.criteria.TargetedMisclassification(classes)
            if targeted
            else fb.criteria.Misclassification(classes)
        )
        return attack.run(fmodel, x, criterion)

    return run


def _foolbox_distance_name(attack: Any) -> str:
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


def _public_attributes(attack: Any) -> Dict[str, Any]:
    return _jsonable({k: v for k, v in vars(attack).items() if not k.startswith("_")})


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


AttackLike = Union[str, AttackConfig, Any, None]


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
