"""Model specs: what a worker process rebuilds a Foolbox model from, never a pickled live model.

Accepted forms (:func:`parse_model_spec`):

* a zoo name (:data:`foolbox_alma.zoo.ARCHITECTURES`, read when the spec is parsed: ``smallcnn``,
  ``smallcnn-robust``, ...), built in ``framework`` (PyTorch by default);
* ``path/to/file.py:function`` (relative to the working directory, or absolute) or
  ``package.module:function``: a function of no arguments returning a Foolbox model of any
  framework (``fb.PyTorchModel``, ``fb.TensorFlowModel``, ``fb.JAXModel`` or any ``fb.Model``);
* a TorchScript file (``.pt``, ``.pth``), with ``bounds``;
* a Keras file (``.keras``, ``.h5``), with ``bounds``; its layout is read from its input shape.

Parsing checks what it can without importing a framework or the user's code (names, files,
bounds, that the framework is installed); :meth:`ModelSpec.load` imports and builds, in whichever
process runs it.

Example::

    spec = parse_model_spec("my_model.py:build")             # or "smallcnn", "net.pt", ...
    fmodel = spec.load()                                     # in this process or in a worker
"""

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import foolbox as fb

from .._runtime import (
    FRAMEWORK_ALIASES,
    FRAMEWORK_MODULE,
    FRAMEWORKS,
    TensorFlowModel,
    check_bounds,
    framework_installed,
)

KINDS = ("zoo", "file-function", "module-function", "torchscript", "keras")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth")
KERAS_SUFFIXES = (".keras", ".h5")

Bounds = Tuple[float, float]


@dataclass(frozen=True)
class ModelSpec:
    """Something a worker process can rebuild the model from (picklable and hashable).

    Make one with :func:`parse_model_spec`, which checks it.

    Attributes:
        text: The spec as given: ``"smallcnn"``, ``"path/to/file.py:function"``,
            ``"pkg.mod:function"``, ``"model.pt"``, ``"model.keras"``.
        kind: ``"zoo"``, ``"file-function"``, ``"module-function"``, ``"torchscript"`` or
            ``"keras"``.
        bounds: Input bounds ``(lo, hi)``: required for TorchScript and Keras files; for a zoo
            model or a function, when given, the model's own bounds must equal them.
        framework: Zoo models only: ``"pytorch"`` (the default), ``"tensorflow"`` or ``"jax"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where PyTorch zoo models and TorchScript
            files run (a function places its model itself; TensorFlow and JAX choose their
            device themselves).
        path: The absolute path of the model file (file kinds), resolved when parsed, so that a
            worker with another working directory finds it; derived from ``text`` when None.
    """

    text: str
    kind: str
    bounds: Optional[Bounds] = None
    framework: Optional[str] = None
    device: str = "cpu"
    path: Optional[str] = None

    def load(self) -> fb.Model:
        """Builds the Foolbox model (imports the framework and the user's module here).

        Raises:
            ValueError: the framework is missing, the file or module cannot be loaded, the
                function returns no Foolbox model, or its bounds differ from ``bounds``.
        """
        if self.kind == "zoo":
            return _zoo_model(self)
        if self.kind in ("file-function", "module-function"):
            return _function_model(self)
        if self.kind == "torchscript":
            return _torchscript_model(self)
        if self.kind == "keras":
            return _keras_model(self)
        raise ValueError(f"model spec {self.text!r}: unknown kind {self.kind!r}; one of {KINDS}")

    def describe(self) -> Dict[str, Any]:
        """JSON-able identity: the fields, and for files their absolute path and SHA-256.

        A resumed run compares it with the stored one, so an edited model file is noticed. A
        ``package.module:function`` spec carries no digest: finding its file would import the
        package.
        """
        info: Dict[str, Any] = {
            "text": self.text,
            "kind": self.kind,
            "bounds": None if self.bounds is None else [float(v) for v in self.bounds],
            "framework": self.framework,
            "device": self.device,
        }
        file = self.file
        if file is not None:
            info["path"] = file
            info["sha256"] = file_sha256(file) if os.path.isfile(file) else None
        return info

    @property
    def file(self) -> Optional[str]:
        """The absolute path of the file the model comes from (None for zoo and module specs)."""
        if self.kind in ("torchscript", "keras"):
            return self.path or os.path.abspath(self.text)
        if self.kind == "file-function":
            return self.path or os.path.abspath(self.text.rsplit(":", 1)[0])
        return None

    @property
    def function(self) -> Optional[str]:
        """The function's name of a function spec (None otherwise)."""
        if self.kind in ("file-function", "module-function"):
            return self.text.rsplit(":", 1)[1]
        return None


def parse_model_spec(
    text: str,
    *,
    bounds: Optional[Sequence[float]] = None,
    framework: Optional[str] = None,
    device: str = "cpu",
) -> ModelSpec:
    """Reads a model spec (the forms of the module docstring); imports and loads nothing.

    Args:
        text: A zoo name, ``file.py:function``, ``package.module:function``, a ``.pt``/``.pth``
            TorchScript file or a ``.keras``/``.h5`` Keras file.
        bounds: Input bounds ``(lo, hi)``, finite, ``lo < hi``; required for model files.
        framework: For zoo names: ``"pytorch"`` (default, or ``"torch"``), ``"tensorflow"``
            (``"tf"``) or ``"jax"``; an error for other specs, whose framework is their own.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: naming the spec and what is accepted: an unknown name, a missing file, no
            ``:function``, a malformed module or function name, bounds missing or malformed, an
            unknown framework or one that is not installed, an unknown device.
    """
    from .. import zoo

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"model spec must be a non-empty string, got {text!r}; {_accepted()}")
    text = text.strip()
    checked_bounds = _check_bounds(text, bounds)
    device = _check_device(text, device)
    if text in zoo.ARCHITECTURES:
        name = _check_framework(text, framework or "pytorch")
        _require_installed(text, name)
        return ModelSpec(text, "zoo", checked_bounds, name, device)
    if framework is not None:
        raise ValueError(
            f"model spec {text!r}: framework={framework!r} applies to zoo names only "
            f"({', '.join(zoo.ARCHITECTURES)}); other models bring their own framework"
        )
    lower = text.lower()
    if lower.endswith(TORCHSCRIPT_SUFFIXES + KERAS_SUFFIXES):
        torchscript = lower.endswith(TORCHSCRIPT_SUFFIXES)
        what = "TorchScript" if torchscript else "Keras"
        if not os.path.isfile(text):
            raise ValueError(f"model spec {text!r}: {what} file not found")
        if checked_bounds is None:
            raise ValueError(
                f"model spec {text!r}: a {what} file needs its input bounds "
                "(--bounds LO,HI, e.g. 0,1 or 0,255)"
            )
        _require_installed(text, "pytorch" if torchscript else "tensorflow")
        kind = "torchscript" if torchscript else "keras"
        return ModelSpec(text, kind, checked_bounds, None, device, os.path.abspath(text))
    if ":" not in text:
        hint = (
            " (a Python file needs ':function', e.g. model.py:build)"
            if lower.endswith(".py")
            else ""
        )
        raise ValueError(f"unknown model spec {text!r}{hint}; {_accepted()}")
    where, function = text.rsplit(":", 1)
    if not function.isidentifier():
        raise ValueError(
            f"model spec {text!r}: {function!r} after ':' is not a function name; {_accepted()}"
        )
    if where.lower().endswith(".py"):
        if not os.path.isfile(where):
            raise ValueError(f"model spec {text!r}: Python file {where!r} not found")
        path = os.path.abspath(where)
        return ModelSpec(text, "file-function", checked_bounds, None, device, path)
    if where and all(part.isidentifier() for part in where.split(".")):
        return ModelSpec(text, "module-function", checked_bounds, None, device)
    raise ValueError(
        f"model spec {text!r}: {where!r} before ':' is neither a .py file nor a module name "
        f"(package.module); {_accepted()}"
    )


def load_model(spec: Union[str, ModelSpec], **kwargs: Any) -> fb.Model:
    """The Foolbox model of ``spec``; a string is parsed first, with ``kwargs``
    (``bounds``, ``framework``, ``device``) passed to :func:`parse_model_spec`."""
    if isinstance(spec, str):
        spec = parse_model_spec(spec, **kwargs)
    elif kwargs:
        raise TypeError(f"load_model: keyword arguments {sorted(kwargs)} need a spec string")
    return spec.load()


@dataclass(frozen=True, eq=False)
class LiveModel:
    """A Foolbox model given as an object: usable in this process only (a worker cannot
    rebuild it). Hashed by identity."""

    model: Any

    def load(self) -> Any:
        return self.model

    def describe(self) -> Dict[str, Any]:
        return {
            "text": f"<{type(self.model).__name__} object>",
            "kind": "object",
            "bounds": list(self.model.bounds),
        }


_BUILT: Dict[ModelSpec, fb.Model] = {}


def model_of(spec: Union[ModelSpec, LiveModel]) -> fb.Model:
    """The Foolbox model of ``spec``, built once per process (a worker attacks many shards); a
    :class:`LiveModel` is its own model."""
    if isinstance(spec, LiveModel):
        return spec.model
    if spec not in _BUILT:
        _BUILT[spec] = spec.load()
    return _BUILT[spec]


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- builders -------------------------------------------------------------------------------------


def _zoo_model(spec: ModelSpec) -> fb.Model:
    from .. import zoo

    framework = spec.framework or "pytorch"
    _import_framework(spec, framework)
    model = zoo.foolbox_model(framework, spec.text)
    if framework == "pytorch" and spec.device != "cpu":
        _check_cuda(spec)
        module: Any = model._model.to(spec.device)  # Foolbox keeps the torch module there
        model = fb.PyTorchModel(module, bounds=model.bounds, device=spec.device)
    _check_model_bounds(spec, model)
    return model


def _function_model(spec: ModelSpec) -> fb.Model:
    where, name = spec.text.rsplit(":", 1)
    module = _import_file(spec) if spec.kind == "file-function" else _import_module(spec, where)
    function = getattr(module, name, None)
    if function is None:
        raise ValueError(f"model spec {spec.text!r}: {where!r} has no function {name!r}")
    if not callable(function):
        raise ValueError(
            f"model spec {spec.text!r}: {name!r} in {where!r} is a "
            f"{type(function).__name__}, not a function"
        )
    try:
        model = function()
    except Exception as error:
        raise ValueError(
            f"model spec {spec.text!r}: calling {name}() failed: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(model, fb.Model):
        raise ValueError(
            f"model spec {spec.text!r}: {name}() returned a {type(model).__module__}."
            f"{type(model).__qualname__}, not a Foolbox model; return one, e.g. "
            "fb.PyTorchModel(net.eval(), bounds=(0, 1)), fb.TensorFlowModel(keras_model, "
            "bounds=(0, 1)) or fb.JAXModel(function, bounds=(0, 1))"
        )
    _check_model_bounds(spec, model)
    return model


def _import_file(spec: ModelSpec) -> Any:
    path = spec.file
    assert path is not None
    if not os.path.isfile(path):
        raise ValueError(f"model spec {spec.text!r}: Python file {path!r} not found")
    # One module per file path: a worker that loads the same spec twice imports it once (so an
    # edit to the file after its first load in a process is not seen by that process).
    module_name = "_foolbox_alma_model_" + hashlib.sha256(path.encode()).hexdigest()[:16]
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"model spec {spec.text!r}: {path!r} cannot be imported as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # before running it, as import does (dataclasses need it)
    try:
        loader_spec.loader.exec_module(module)
    except BaseException as error:
        del sys.modules[module_name]
        if not isinstance(error, Exception):
            raise
        raise ValueError(
            f"model spec {spec.text!r}: importing {path!r} failed: {type(error).__name__}: {error}"
        ) from error
    return module


def _import_module(spec: ModelSpec, where: str) -> Any:
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as error:
        if error.name is not None and (where == error.name or where.startswith(error.name + ".")):
            raise ValueError(
                f"model spec {spec.text!r}: module {where!r} not found "
                f"(no module named {error.name!r} on sys.path)"
            ) from error
        raise ValueError(
            f"model spec {spec.text!r}: importing {where!r} failed: {error}"
        ) from error
    except Exception as error:
        raise ValueError(
            f"model spec {spec.text!r}: importing {where!r} failed: {type(error).__name__}: {error}"
        ) from error


def _model_file(spec: ModelSpec, kind: str) -> Tuple[str, Bounds]:
    """The existing model file of a TorchScript or Keras spec, and the spec's bounds."""
    path, bounds = spec.file, spec.bounds
    assert path is not None and bounds is not None
    if not os.path.isfile(path):
        raise ValueError(f"model spec {spec.text!r}: {kind} file {path!r} not found")
    return path, bounds


def _torchscript_model(spec: ModelSpec) -> fb.Model:
    torch = _import_framework(spec, "pytorch")
    path, bounds = _model_file(spec, "TorchScript")
    if spec.device != "cpu":
        _check_cuda(spec)
    try:
        module = torch.jit.load(path, map_location=spec.device)
    except Exception as error:
        raise ValueError(
            f"model spec {spec.text!r}: cannot load {path!r} as TorchScript ({error}); save a "
            "model with torch.jit.script(net).save(path) or torch.jit.trace(net, x).save(path)"
        ) from error
    return fb.PyTorchModel(module.eval(), bounds=bounds, device=spec.device)


def _keras_model(spec: ModelSpec) -> fb.Model:
    tf = _import_framework(spec, "tensorflow")
    path, bounds = _model_file(spec, "Keras")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"model spec {spec.text!r}: cannot load {path!r} as a Keras model ({error})"
        ) from error
    return TensorFlowModel(model, bounds=bounds, data_format=keras_data_format(model))


def keras_data_format(model: Any) -> str:
    """The layout a Keras model's input shape implies: a last axis of 1 or 3 channels is
    ``"channels_last"``, anything else ``"channels_first"``.

    Foolbox's ``TensorFlowModel.data_format`` reports the global Keras setting instead, which
    says nothing about a loaded model (see :class:`foolbox_alma._runtime.TensorFlowModel`).
    """
    shape = model.input_shape
    if isinstance(shape, list):
        raise ValueError(f"a Keras model with one input expected, this one has {len(shape)}")
    return "channels_last" if len(shape) == 4 and shape[-1] in (1, 3) else "channels_first"


# --- checks ---------------------------------------------------------------------------------------


def _accepted() -> str:
    from .. import zoo

    return (
        f"accepted: a zoo name ({', '.join(zoo.ARCHITECTURES)}), 'path/to/file.py:function', "
        "'package.module:function', a TorchScript file (.pt, .pth) or a Keras file (.keras, .h5), "
        "the files with bounds"
    )


def _check_bounds(text: str, bounds: Optional[Sequence[float]]) -> Optional[Bounds]:
    return None if bounds is None else check_bounds(bounds, f"model spec {text!r}: ")


def _check_device(text: str, device: str) -> str:
    ok = isinstance(device, str) and (
        device in ("cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    )
    if not ok:
        raise ValueError(
            f"model spec {text!r}: device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        )
    return device


def _check_framework(text: str, framework: str) -> str:
    try:
        return FRAMEWORK_ALIASES[framework.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"model spec {text!r}: unknown framework {framework!r}; use one of {', '.join(FRAMEWORKS)}"
        ) from None


def _require_installed(text: str, framework: str) -> None:
    if not framework_installed(framework):
        raise ValueError(
            f"model spec {text!r} needs {framework}, which is not installed "
            f"(pip install 'foolbox-alma[{'torch' if framework == 'pytorch' else framework}]')"
        )


def _import_framework(spec: ModelSpec, framework: str) -> Any:
    _require_installed(spec.text, framework)
    return importlib.import_module(FRAMEWORK_MODULE[framework])


def _check_cuda(spec: ModelSpec) -> None:
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"model spec {spec.text!r}: device {spec.device!r} asked for, but PyTorch sees no "
            "CUDA device (torch.cuda.is_available() is False)"
        )


def _check_model_bounds(spec: ModelSpec, model: fb.Model) -> None:
    if spec.bounds is not None and tuple(map(float, model.bounds)) != tuple(spec.bounds):
        raise ValueError(
            f"model spec {spec.text!r}: the model's bounds {tuple(model.bounds)} differ from the "
            f"bounds given {spec.bounds}"
        )
