"""Model specs: what a worker process rebuilds a Foolbox model from (never a pickled live model).

Accepted forms (:func:`parse_model_spec`):

* a zoo name (:data:`foolbox_alma.zoo.ARCHITECTURES`, e.g. ``smallcnn``), built in ``framework``
  (PyTorch by default);
* ``path/to/file.py:function`` or ``package.module:function``: a function of no arguments that
  returns a Foolbox model of any framework (PyTorch, TensorFlow, JAX);
* a TorchScript file (``.pt``, ``.pth``, ``.ts``), with ``bounds``;
* a Keras file (``.keras``, ``.h5``), with ``bounds``; its layout (channels-first or -last) is
  read from the model's input shape.
"""

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import foolbox as fb

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")
KERAS_SUFFIXES = (".keras", ".h5")
KINDS = ("zoo", "file-function", "module-function", "torchscript", "keras")
ACCEPTED = (
    "a zoo name ({zoo}), 'path/to/file.py:function', 'package.module:function', a TorchScript "
    "file (.pt) or a Keras file (.keras), the last two with bounds"
)


@dataclass(frozen=True)
class ModelSpec:
    """Something a worker process can rebuild the model from (picklable, hashable).

    Attributes:
        text: The spec as given (file paths made absolute).
        kind: One of ``"zoo"``, ``"file-function"``, ``"module-function"``, ``"torchscript"``,
            ``"keras"``.
        bounds: The model's input bounds (TorchScript and Keras files).
        framework: Framework of a zoo model (``"pytorch"``, ``"tensorflow"``, ``"jax"``).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:0"``...): where PyTorch models run.
    """

    text: str
    kind: str
    bounds: Optional[Tuple[float, float]] = None
    framework: Optional[str] = None
    device: str = "cpu"

    def load(self) -> fb.Model:
        """Builds the Foolbox model."""
        if self.kind == "zoo":
            return _zoo_model(self)
        if self.kind in ("file-function", "module-function"):
            return _function_model(self)
        if self.kind == "torchscript":
            return _torchscript_model(self)
        return _keras_model(self)

    def describe(self) -> Dict[str, Any]:
        """JSON-able identity; files carry their SHA-256, so a changed file is noticed."""
        info: Dict[str, Any] = {
            "text": self.text,
            "kind": self.kind,
            "bounds": list(self.bounds) if self.bounds is not None else None,
            "framework": self.framework,
            "device": self.device,
        }
        path = self.path
        if path is not None and os.path.isfile(path):
            info["sha256"] = _sha256(path)
        return info

    @property
    def path(self) -> Optional[str]:
        """The file the model comes from, if any."""
        if self.kind in ("torchscript", "keras"):
            return self.text
        if self.kind == "file-function":
            return self.text.rsplit(":", 1)[0]
        return None


def parse_model_spec(
    text: str,
    *,
    bounds: Optional[Tuple[float, float]] = None,
    framework: Optional[str] = None,
    device: str = "cpu",
) -> ModelSpec:
    """Reads a model spec (see the module docstring); nothing is imported or loaded yet.

    Raises:
        ValueError: unknown name, missing file, a file without bounds, bad bounds or device.
    """
    from .. import zoo

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"model spec must be a non-empty string, got {text!r}")
    text = text.strip()
    checked_bounds = _check_bounds(bounds)
    device = _check_device(device)
    accepted = ACCEPTED.format(zoo=", ".join(zoo.ARCHITECTURES))
    if framework is not None:
        framework = {"torch": "pytorch", "tf": "tensorflow"}.get(framework, framework)
        if framework not in ("pytorch", "tensorflow", "jax"):
            raise ValueError(f"unknown framework {framework!r}; use pytorch, tensorflow or jax")
    if text in zoo.ARCHITECTURES:
        return ModelSpec(text, "zoo", checked_bounds, framework or "pytorch", device)
    lower = text.lower()
    if lower.endswith(TORCHSCRIPT_SUFFIXES + KERAS_SUFFIXES):
        kind = "torchscript" if lower.endswith(TORCHSCRIPT_SUFFIXES) else "keras"
        if not os.path.isfile(text):
            raise ValueError(f"model file {text!r} does not exist")
        if checked_bounds is None:
            raise ValueError(
                f"model file {text!r} needs its input bounds: --bounds LO,HI (e.g. 0,1 or 0,255)"
            )
        return ModelSpec(os.path.abspath(text), kind, checked_bounds, None, device)
    if ":" in text:
        where, function = text.rsplit(":", 1)
        if not function.isidentifier():
            raise ValueError(f"model spec {text!r}: {function!r} is not a function name")
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise ValueError(f"model spec {text!r}: file {where!r} does not exist")
            return ModelSpec(
                f"{os.path.abspath(where)}:{function}",
                "file-function",
                checked_bounds,
                None,
                device,
            )
        if all(part.isidentifier() for part in where.split(".")):
            return ModelSpec(text, "module-function", checked_bounds, None, device)
        raise ValueError(f"model spec {text!r}: {where!r} is neither a .py file nor a module")
    raise ValueError(f"unknown model {text!r}; use {accepted}")


def load_model(spec: "str | ModelSpec", **kwargs: Any) -> fb.Model:
    """The Foolbox model of a spec (a string is parsed with ``kwargs`` first)."""
    if isinstance(spec, str):
        spec = parse_model_spec(spec, **kwargs)
    return spec.load()


# -- builders ---------------------------------------------------------------------------------


def _zoo_model(spec: ModelSpec) -> fb.Model:
    from .. import zoo

    model = zoo.foolbox_model(spec.framework or "pytorch", spec.text)
    if spec.device != "cpu" and isinstance(model, fb.PyTorchModel):
        module: Any = model._model  # a torch.nn.Module (Foolbox types it as a callable)
        module = module.to(spec.device)
        model = fb.PyTorchModel(module, bounds=model.bounds, device=spec.device)
    return model


def _function_model(spec: ModelSpec) -> fb.Model:
    where, name = spec.text.rsplit(":", 1)
    try:
        if spec.kind == "file-function":
            module_name = "_foolbox_alma_model_" + hashlib.sha256(where.encode()).hexdigest()[:12]
            module = sys.modules.get(module_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(module_name, where)
                if loader_spec is None or loader_spec.loader is None:
                    raise ImportError(f"cannot import {where}")
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[module_name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[module_name]
                    raise
        else:
            module = importlib.import_module(where)
    except Exception as error:  # noqa: BLE001 - the user's import error, named
        raise ValueError(
            f"model spec {spec.text!r}: importing {where!r} failed: {type(error).__name__}: {error}"
        ) from error
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"model spec {spec.text!r}: {where!r} has no function {name!r}")
    model = function()
    if not isinstance(model, fb.Model):
        raise ValueError(
            f"model spec {spec.text!r}: {name}() returned a {type(model).__name__}, not a "
            "Foolbox model (wrap it: fb.PyTorchModel(net.eval(), bounds=(0, 1)), "
            "fb.TensorFlowModel(...), fb.JAXModel(...))"
        )
    if spec.bounds is not None and tuple(model.bounds) != tuple(spec.bounds):
        raise ValueError(
            f"model spec {spec.text!r}: the model's bounds {tuple(model.bounds)} differ from "
            f"the bounds given {spec.bounds}"
        )
    return model


def _torchscript_model(spec: ModelSpec) -> fb.Model:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{spec.text!r} is a TorchScript file: PyTorch is not installed") from None
    try:
        module = torch.jit.load(spec.text, map_location=spec.device)
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"cannot load TorchScript file {spec.text!r}: {error}") from error
    assert spec.bounds is not None
    return fb.PyTorchModel(module.eval(), bounds=spec.bounds, device=spec.device)


def _keras_model(spec: ModelSpec) -> fb.Model:
    try:
        import tensorflow as tf
    except ImportError:
        raise ValueError(f"{spec.text!r} is a Keras file: TensorFlow is not installed") from None
    from ..zoo.smallcnn import _TensorFlowModel

    try:
        model = tf.keras.models.load_model(spec.text, compile=False)
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"cannot load Keras file {spec.text!r}: {error}") from error
    shape = tuple(model.input_shape)
    data_format = "channels_last" if len(shape) == 4 and shape[-1] in (1, 3) else "channels_first"
    assert spec.bounds is not None
    return _TensorFlowModel(model, bounds=spec.bounds, data_format=data_format)


def _check_bounds(bounds: Any) -> Optional[Tuple[float, float]]:
    if bounds is None:
        return None
    try:
        lo, hi = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be two numbers (lo, hi), got {bounds!r}") from None
    if not (lo < hi) or not all(abs(v) < float("inf") for v in (lo, hi)):
        raise ValueError(f"bounds must be finite with lo < hi, got {bounds!r}")
    return lo, hi


def _check_device(device: str) -> str:
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu' or 'cuda' ('cuda:0', ...), got {device!r}")
    return device


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]
