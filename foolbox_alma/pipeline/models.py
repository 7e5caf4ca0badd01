"""Model specs: what a worker process rebuilds a Foolbox model from, never a pickled live model.

Accepted forms (:func:`parse_model_spec`):

* a zoo name (:data:`foolbox_alma.zoo.ARCHITECTURES`, read when the spec is parsed: ``smallcnn``,
  ``colour-cnn``, ``resnet18-cifar``, ...), built in ``framework`` (PyTorch by default);
* ``path/to/file.py:function`` (relative to the working directory, or absolute) or
  ``package.module:function``: a function of no arguments returning a Foolbox model of any
  framework (``fb.PyTorchModel``, ``fb.TensorFlowModel``, ``fb.JAXModel`` or any ``fb.Model``),
  or a bare ``torch.nn.Module`` or Keras model, which is wrapped with ``bounds`` (and
  ``preprocessing``);
* a TorchScript file (``.pt``, ``.pth``, scripted or traced), with ``bounds``; a state dict, a
  training checkpoint or a pickled module saved under those names gets an error that says which
  it is and shows the model file to write instead;
* a Keras file (``.keras``, ``.h5``) or a TensorFlow SavedModel folder, with ``bounds``; the layout
  is read from the input shape.

Parsing checks what it can without importing a framework or the user's code (names, files,
bounds, that the framework is installed); :meth:`ModelSpec.load` imports and builds, in whichever
process runs it, and checks the device the model is on.

Example::

    spec = parse_model_spec("my_model.py:build")             # or "smallcnn", "net.pt", ...
    fmodel = spec.load()                                     # in this process or in a worker
"""

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import foolbox as fb

from .. import zoo
from .._runtime import (
    FRAMEWORK_ALIASES,
    FRAMEWORK_MODULE,
    FRAMEWORKS,
    TensorFlowModel,
    check_bounds,
    framework_installed,
    model_framework,
)

KINDS = ("zoo", "file-function", "module-function", "torchscript", "keras", "savedmodel")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth")
KERAS_SUFFIXES = (".keras", ".h5")
FILE_KINDS = ("torchscript", "keras", "savedmodel")

Bounds = Tuple[float, float]
Preprocessing = Tuple[Tuple[float, ...], Tuple[float, ...]]

MODEL_FILE_EXAMPLE = """\
    # my_model.py
    import foolbox as fb, torch
    from my_network import Net            # the class that defines your network

    def build():
        net = Net()
        net.load_state_dict(torch.load("{weights}", map_location="cpu"){key})
        return fb.PyTorchModel(net.eval(), bounds=(0, 1))   # your inputs' range"""

PICKLED_MODULE_EXAMPLE = """\
    # my_model.py
    import foolbox as fb, torch
    from my_network import Net            # the pickled class must be importable

    def build():
        net = torch.load("{weights}", map_location="cpu", weights_only=False)  # trusted files only
        return fb.PyTorchModel(net.eval(), bounds=(0, 1))   # your inputs' range"""


@dataclass(frozen=True)
class ModelSpec:
    """Something a worker process can rebuild the model from (picklable and hashable).

    Make one with :func:`parse_model_spec`, which checks it.

    Attributes:
        text: The spec as given: ``"smallcnn"``, ``"path/to/file.py:function"``,
            ``"pkg.mod:function"``, ``"model.pt"``, ``"model.keras"``, ``"saved_model_dir"``.
        kind: One of :data:`KINDS`.
        bounds: Input bounds ``(lo, hi)``: required for model files and for functions returning
            a bare network; for a zoo model or a function returning a Foolbox model, when given,
            the model's own bounds must equal them.
        framework: Zoo models only: ``"pytorch"`` (the default), ``"tensorflow"`` or ``"jax"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the model must run; None: not
            asked (PyTorch zoo models and TorchScript files on the CPU, a function's model where
            it put it). PyTorch zoo models and TorchScript files are put there; a function
            places its model itself and one on another device is refused; TensorFlow and JAX
            choose their device themselves and ``cuda`` is refused where they see no GPU.
        path: The absolute path of the model file (file kinds), resolved when parsed, so that a
            worker with another working directory finds it; derived from ``text`` when None.
        preprocessing: ``(mean, std)`` per channel (or one value each), applied as Foolbox's
            ``preprocessing`` to networks this package wraps (bare modules, model files).
    """

    text: str
    kind: str
    bounds: Optional[Bounds] = None
    framework: Optional[str] = None
    device: Optional[str] = None
    path: Optional[str] = None
    preprocessing: Optional[Preprocessing] = None

    def load(self, fresh: bool = False) -> fb.Model:
        """Builds the Foolbox model (imports the framework and the user's module here).

        ``fresh`` runs a model file's Python module again even if this process imported it
        before (its weights may have changed since).

        Raises:
            ValueError: the framework is missing, the file or module cannot be loaded, the
                function returns no model, its bounds differ from ``bounds``, or the device
                asked for is not there.
        """
        if self.kind == "zoo":
            model = _zoo_model(self)
        elif self.kind in ("file-function", "module-function"):
            model = _function_model(self, fresh)
        elif self.kind == "torchscript":
            model = _torchscript_model(self)
        elif self.kind == "keras":
            model = _keras_model(self)
        elif self.kind == "savedmodel":
            model = _saved_model(self)
        else:
            raise ValueError(
                f"model spec {self.text!r}: unknown kind {self.kind!r}; one of {KINDS}"
            )
        _check_device_of(self, model)
        return model

    def identity(self) -> Dict[str, Any]:
        """What the model's results depend on (hashed into a run's identity): the kind, the
        model file's SHA-256 (not its path), the function, bounds, framework, device and
        preprocessing. The weights themselves are the fingerprint's (:mod:`.fingerprint`)."""
        info: Dict[str, Any] = {
            "kind": self.kind,
            "bounds": None if self.bounds is None else [float(v) for v in self.bounds],
            "framework": self.framework,
            "device": self.device,
            "preprocessing": None if self.preprocessing is None else list(self.preprocessing),
        }
        if self.kind == "zoo":
            info["name"] = self.text
        if self.function is not None:
            info["function"] = self.function
        if self.kind == "module-function":
            info["module"] = self.text.rsplit(":", 1)[0]
        file = self.file
        if file is not None:
            info["sha256"] = _file_or_folder_sha256(file) if os.path.exists(file) else None
        return info

    def describe(self) -> Dict[str, Any]:
        """JSON-able description: :meth:`identity` and the spec's text and absolute path."""
        info = {"text": self.text, **self.identity()}
        if self.file is not None:
            info["path"] = self.file
        return info

    @property
    def file(self) -> Optional[str]:
        """The absolute path of the file the model comes from (None for zoo and module specs)."""
        if self.kind in FILE_KINDS:
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


@dataclass(frozen=True, eq=False)
class LiveModel:
    """A Foolbox model given as an object: usable in this process only (a worker cannot
    rebuild it). Hashed by identity; its weights are told apart by their fingerprint."""

    model: Any

    def load(self, fresh: bool = False) -> Any:
        return self.model

    def identity(self) -> Dict[str, Any]:
        return {
            "kind": "object",
            "class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "bounds": [float(v) for v in self.model.bounds],
        }

    def describe(self) -> Dict[str, Any]:
        return {"text": f"<{type(self.model).__name__} object>", **self.identity()}


def parse_model_spec(
    text: str,
    *,
    bounds: Optional[Sequence[float]] = None,
    framework: Optional[str] = None,
    device: Optional[str] = None,
    preprocessing: Optional[Any] = None,
) -> ModelSpec:
    """Reads a model spec (the forms of the module docstring); imports and loads nothing.

    Args:
        text: A zoo name, ``file.py:function``, ``package.module:function``, a ``.pt``/``.pth``
            TorchScript file, a ``.keras``/``.h5`` Keras file or a SavedModel folder.
        bounds: Input bounds ``(lo, hi)``, finite, ``lo < hi``; required for model files.
        framework: For zoo names: ``"pytorch"`` (default, or ``"torch"``), ``"tensorflow"``
            (``"tf"``) or ``"jax"``; an error for other specs, whose framework is their own.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (not asked).
        preprocessing: ``(mean, std)``: numbers or per-channel sequences, std > 0.

    Raises:
        ValueError: naming the spec and what is accepted: an unknown name, a missing file, no
            ``:function``, a malformed module or function name, bounds missing or malformed, an
            unknown framework or one that is not installed, an unknown device.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"model spec must be a non-empty string, got {text!r}; {_accepted()}")
    text = text.strip()
    options: Dict[str, Any] = dict(
        bounds=_check_bounds(text, bounds),
        device=_check_device(text, device),
        preprocessing=check_preprocessing(preprocessing, f"model spec {text!r}: "),
    )
    if text in zoo.ARCHITECTURES:
        name = _check_framework(text, framework or "pytorch")
        _require_installed(text, name)
        return ModelSpec(text, "zoo", framework=name, **options)
    if framework is not None:
        raise ValueError(
            f"model spec {text!r}: framework={framework!r} applies to zoo names only "
            f"({', '.join(zoo.ARCHITECTURES)}); other models bring their own framework"
        )
    lower = text.lower().rstrip("/")
    if lower.endswith(TORCHSCRIPT_SUFFIXES + KERAS_SUFFIXES) or _is_saved_model(text):
        return _file_spec(text, lower, options)
    if ":" not in text:
        hint = (
            " (a Python file needs ':function', e.g. model.py:build)"
            if lower.endswith(".py")
            else " (a folder is a model only if it is a TensorFlow SavedModel, with saved_model.pb)"
            if os.path.isdir(text)
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
        return ModelSpec(text, "file-function", path=os.path.abspath(where), **options)
    if where and all(part.isidentifier() for part in where.split(".")):
        return ModelSpec(text, "module-function", **options)
    raise ValueError(
        f"model spec {text!r}: {where!r} before ':' is neither a .py file nor a module name "
        f"(package.module); {_accepted()}"
    )


def _file_spec(text: str, lower: str, options: Dict[str, Any]) -> ModelSpec:
    torchscript = lower.endswith(TORCHSCRIPT_SUFFIXES)
    kind = (
        "torchscript"
        if torchscript
        else "keras"
        if lower.endswith(KERAS_SUFFIXES)
        else "savedmodel"
    )
    what = {"torchscript": "TorchScript file", "keras": "Keras file", "savedmodel": "SavedModel"}
    if not os.path.exists(text):
        raise ValueError(f"model spec {text!r}: {what[kind]} not found")
    if options["bounds"] is None:
        raise ValueError(
            f"model spec {text!r}: a {what[kind]} needs its input bounds "
            "(--bounds LO,HI, e.g. 0,1 or 0,255)"
        )
    _require_installed(text, "pytorch" if torchscript else "tensorflow")
    return ModelSpec(text, kind, path=os.path.abspath(text), **options)


def _is_saved_model(text: str) -> bool:
    return os.path.isdir(text) and os.path.isfile(os.path.join(text, "saved_model.pb"))


def check_preprocessing(value: Any, prefix: str = "") -> Optional[Preprocessing]:
    """``(mean, std)`` as tuples of floats (one value, or one per channel), std > 0; else a
    ValueError (its message after ``prefix``) naming what was given."""
    if value is None:
        return None
    try:
        mean, std = value
        parts = tuple(
            tuple(float(v) for v in (p if isinstance(p, (list, tuple)) else [p]))
            for p in (mean, std)
        )
    except (TypeError, ValueError):
        raise ValueError(
            f"{prefix}preprocessing must be (mean, std), numbers or one per channel, got {value!r}"
        ) from None
    if len(parts[0]) != len(parts[1]) or not all(s > 0 for s in parts[1]):
        raise ValueError(
            f"{prefix}preprocessing needs as many means as stds and stds > 0, got {value!r}"
        )
    return parts[0], parts[1]


def load_model(spec: Union[str, ModelSpec], **kwargs: Any) -> fb.Model:
    """The Foolbox model of ``spec``; a string is parsed first, with ``kwargs``
    (``bounds``, ``framework``, ``device``, ``preprocessing``) passed to :func:`parse_model_spec`."""
    if isinstance(spec, str):
        spec = parse_model_spec(spec, **kwargs)
    elif kwargs:
        raise TypeError(f"load_model: keyword arguments {sorted(kwargs)} need a spec string")
    return spec.load()


_BUILT: Dict[ModelSpec, fb.Model] = {}


def model_of(spec: Union[ModelSpec, LiveModel], fresh: bool = False) -> fb.Model:
    """The Foolbox model of ``spec``, built once per process (a worker attacks many shards);
    ``fresh`` builds it again (a model file's module is run again: its weights may have changed)
    and keeps the new one. A :class:`LiveModel` is its own model."""
    if isinstance(spec, LiveModel):
        return spec.model
    if fresh or spec not in _BUILT:
        _BUILT[spec] = spec.load(fresh=fresh)
    return _BUILT[spec]


def device_of(fmodel: Any) -> str:
    """The device the model runs on: PyTorch's (``cpu``, ``cuda:0``...), TensorFlow's and JAX's
    first device (``CPU``, ``GPU``...)."""
    framework = model_framework(fmodel)
    if framework == "pytorch":
        return str(getattr(fmodel, "device", "cpu"))
    if framework == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    import jax

    return str(jax.devices()[0].platform).upper()


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_or_folder_sha256(path: str) -> str:
    """SHA-256 of a file, or of every file of a folder (names and digests, sorted)."""
    if os.path.isfile(path):
        return file_sha256(path)
    digest = hashlib.sha256()
    for root, _, names in sorted(os.walk(path)):
        for name in sorted(names):
            full = os.path.join(root, name)
            digest.update(f"{os.path.relpath(full, path)}:{file_sha256(full)};".encode())
    return digest.hexdigest()


# --- builders -------------------------------------------------------------------------------------


def _zoo_model(spec: ModelSpec) -> fb.Model:
    framework = spec.framework or "pytorch"
    _import_framework(spec, framework)
    model = zoo.foolbox_model(framework, spec.text)
    if framework == "pytorch" and spec.device not in (None, "cpu"):
        _check_cuda(spec)
        module: Any = model._model.to(spec.device)  # Foolbox keeps the torch module there
        model = fb.PyTorchModel(module, bounds=model.bounds, device=spec.device)
    _check_model_bounds(spec, model)
    return model


def _function_model(spec: ModelSpec, fresh: bool) -> fb.Model:
    where, name = spec.text.rsplit(":", 1)
    if spec.kind == "file-function":
        module = _import_file(spec, fresh)
    else:
        module = _import_module(spec, where)
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
        model = _wrap_network(spec, model, f"{name}()")
    _check_model_bounds(spec, model)
    return model


def _wrap_network(spec: ModelSpec, network: Any, origin: str) -> fb.Model:
    """A bare ``torch.nn.Module`` or Keras model as a Foolbox model with the spec's bounds and
    preprocessing; anything else is an error in the user's own names."""
    kind = _network_kind(network)
    what = f"a {_type_name(network, spec)}" + (f" ({kind})" if kind else "")
    if kind is None:
        raise ValueError(
            f"model spec {spec.text!r}: {origin} returned {what}, not a Foolbox model; return "
            "one, e.g. fb.PyTorchModel(net.eval(), bounds=(0, 1)), "
            "fb.TensorFlowModel(keras_model, bounds=(0, 1)) or fb.JAXModel(function, "
            "bounds=(0, 1), data_format=...), or a torch.nn.Module or Keras model with --bounds"
        )
    if spec.bounds is None:
        raise ValueError(
            f"model spec {spec.text!r}: {origin} returned {what}, not a Foolbox model: give its "
            "input range with --bounds LO,HI (e.g. 0,1; and --preprocessing MEAN,STD if it "
            "normalises its inputs outside the network) to have it wrapped, or return "
            "fb.PyTorchModel(net.eval(), bounds=(0, 1)) / fb.TensorFlowModel(model, bounds=(0, 1))"
        )
    if kind == "torch.nn.Module":
        preprocessing = _foolbox_preprocessing(spec, -3)
        # without --device the module stays where it is (Foolbox would move it to cuda:0)
        device = spec.device or next((p.device for p in network.parameters()), "cpu")
        return fb.PyTorchModel(network, spec.bounds, device, preprocessing)
    data_format = keras_data_format(network)
    preprocessing = _foolbox_preprocessing(spec, -1 if data_format == "channels_last" else -3)
    return TensorFlowModel(network, spec.bounds, data_format, preprocessing=preprocessing)


def _type_name(value: Any, spec: ModelSpec) -> str:
    """``module.Class`` of ``value`` in the user's names: a class defined in the model file is
    named after the file (``TinyNet from model.py``), not after the module it was loaded as."""
    kind = type(value)
    if kind.__module__.startswith("_foolbox_alma_model_") and spec.file is not None:
        return f"{kind.__qualname__} from {os.path.basename(spec.file)}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _network_kind(network: Any) -> Optional[str]:
    if "torch" in sys.modules and isinstance(network, sys.modules["torch"].nn.Module):
        return "torch.nn.Module"
    for name in ("keras", "tensorflow"):
        module = sys.modules.get(name)
        keras = getattr(module, "keras", None) if name == "tensorflow" else module
        if keras is not None and isinstance(network, getattr(keras, "Model", ())):
            return "Keras model"
    return None


def _foolbox_preprocessing(spec: ModelSpec, axis: int) -> Optional[Dict[str, Any]]:
    if spec.preprocessing is None:
        return None
    mean, std = spec.preprocessing
    if len(mean) == 1:
        return {"mean": mean[0], "std": std[0]}
    import numpy as np

    return {"mean": np.asarray(mean, np.float32), "std": np.asarray(std, np.float32), "axis": axis}


def _import_file(spec: ModelSpec, fresh: bool = False) -> Any:
    path = spec.file
    assert path is not None
    if not os.path.isfile(path):
        raise ValueError(f"model spec {spec.text!r}: Python file {path!r} not found")
    # One module per file path: a worker that loads the same spec twice imports it once; a
    # fresh load (the driver of a run) runs the file again, as its weights may have changed.
    module_name = "_foolbox_alma_model_" + hashlib.sha256(path.encode()).hexdigest()[:16]
    if module_name in sys.modules and not fresh:
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
    """The existing model file of a file spec, and the spec's bounds."""
    path, bounds = spec.file, spec.bounds
    assert path is not None and bounds is not None
    if not os.path.exists(path):
        raise ValueError(f"model spec {spec.text!r}: {kind} file {path!r} not found")
    return path, bounds


def _torchscript_model(spec: ModelSpec) -> fb.Model:
    torch = _import_framework(spec, "pytorch")
    path, bounds = _model_file(spec, "TorchScript")
    device = spec.device or "cpu"
    if device != "cpu":
        _check_cuda(spec)
    try:
        module = torch.jit.load(path, map_location=device)
    except Exception as error:
        raise ValueError(_not_torchscript(spec, path, error)) from None
    preprocessing = _foolbox_preprocessing(spec, -3)
    return fb.PyTorchModel(module.eval(), bounds, device, preprocessing)


def _not_torchscript(spec: ModelSpec, path: str, error: Exception) -> str:
    """What a ``.pt``/``.pth`` file that is not TorchScript holds, and the model file to write."""
    what, key = _torch_file_contents(path)
    name = os.path.basename(path)
    if what is None:
        return (
            f"model spec {spec.text!r}: cannot load {path!r} as TorchScript ({error}); save a "
            "model with torch.jit.script(net).save(path) or torch.jit.trace(net, x).save(path)"
        )
    if what.startswith("a whole module"):
        why = "unpickling it runs code of a class the file only names"
        example = PICKLED_MODULE_EXAMPLE.format(weights=name)
    else:
        why = "it holds weights but not the network's code, which the attack needs"
        example = MODEL_FILE_EXAMPLE.format(weights=name, key=f"[{key!r}]" if key else "")
    return (
        f"model spec {spec.text!r}: {name} is {what}, not a TorchScript model: {why}. Write a "
        f"model file that builds the network:\n\n{example}\n\nand run with --model "
        "my_model.py:build (or save TorchScript: torch.jit.script(net).save('net.pt'), then "
        "--model net.pt --bounds 0,1)"
    )


def _torch_file_contents(path: str) -> Tuple[Optional[str], Optional[str]]:
    """``(what the file holds, the key of its state dict)`` in words, or (None, None) when it is
    not a file ``torch.save`` wrote. Reads with ``weights_only=True``: nothing is executed."""
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickled module: weights_only refuses its class
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found:
            return f"a whole module pickled with torch.save (class {found.group(1)})", None
        return None, None
    if not isinstance(content, dict):
        return f"a {type(content).__name__} saved with torch.save", None
    tensors = [k for k, v in content.items() if isinstance(v, torch.Tensor)]
    if tensors and len(tensors) == len(content):
        shown = ", ".join(map(str, tensors[:3])) + (", ..." if len(tensors) > 3 else "")
        return f"a state dict ({len(tensors)} tensors: {shown})", None
    keys = [str(k) for k in content]
    key = next((k for k in ("model_state_dict", "state_dict", "model", "net") if k in keys), None)
    return f"a training checkpoint (keys: {', '.join(keys[:6])})", key


def _keras_model(spec: ModelSpec) -> fb.Model:
    tf = _import_framework(spec, "tensorflow")
    path, bounds = _model_file(spec, "Keras")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"model spec {spec.text!r}: cannot load {path!r} as a Keras model ({error})"
        ) from error
    return _wrap_network(spec, model, path)


def _saved_model(spec: ModelSpec) -> fb.Model:
    """A TensorFlow SavedModel folder: its serving signature (one image input, one output)."""
    tf = _import_framework(spec, "tensorflow")
    path, bounds = _model_file(spec, "SavedModel")
    fix = (
        "load it yourself in a model file: model = tf.saved_model.load(path); return "
        "fb.TensorFlowModel(lambda x: model(x), bounds=(0, 1)) (or keras.layers.TFSMLayer)"
    )
    try:
        loaded = tf.saved_model.load(path)
        signature = loaded.signatures["serving_default"]
    except Exception as error:
        raise ValueError(
            f"model spec {spec.text!r}: cannot load {path!r} as a SavedModel with a "
            f"'serving_default' signature ({type(error).__name__}: {error}); {fix}"
        ) from None
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"model spec {spec.text!r}: its serving signature takes {len(inputs)} input(s) and "
            f"returns {len(outputs)} output(s), not one image batch to one logit batch; {fix}"
        )
    (input_name, input_spec), (output_name,) = next(iter(inputs.items())), list(outputs)
    shape = tuple(input_spec.shape)
    layout = "channels_last" if len(shape) == 4 and shape[-1] in (1, 3) else "channels_first"

    def call(x: Any) -> Any:
        return signature(**{input_name: x})[output_name]

    call.saved_model = loaded  # type: ignore[attr-defined]  # keeps the variables alive
    axis = -1 if layout == "channels_last" else -3
    preprocessing = _foolbox_preprocessing(spec, axis)
    return TensorFlowModel(call, bounds=bounds, data_format=layout, preprocessing=preprocessing)


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


def _check_device_of(spec: ModelSpec, model: fb.Model) -> None:
    """The model is where ``spec.device`` says, or an error that says where it is."""
    framework = model_framework(model)
    wanted = spec.device
    if wanted is None:
        return
    if framework == "pytorch":
        if wanted != "cpu":
            _check_cuda(spec)
        actual = str(getattr(model, "device", "cpu"))
        if actual.split(":")[0] != wanted.split(":")[0] or (":" in wanted and actual != wanted):
            raise ValueError(
                f"model spec {spec.text!r}: the model is on {actual} but device {wanted!r} was "
                f"asked for: build it there (fb.PyTorchModel(net, bounds, device={wanted!r})) "
                "or ask for its device"
            )
        return
    if wanted == "cpu":
        return
    if device_of(model) != "GPU":
        raise ValueError(
            f"model spec {spec.text!r}: device {wanted!r} asked for, but {framework} sees no GPU "
            f"(it runs on {device_of(model)})"
        )


# --- checks ---------------------------------------------------------------------------------------


def _accepted() -> str:
    return (
        f"accepted: a zoo name ({', '.join(zoo.ARCHITECTURES)}), 'path/to/file.py:function', "
        "'package.module:function', a TorchScript file (.pt, .pth), a Keras file (.keras, .h5) "
        "or a SavedModel folder, the files with bounds"
    )


def _check_bounds(text: str, bounds: Optional[Sequence[float]]) -> Optional[Bounds]:
    return None if bounds is None else check_bounds(bounds, f"model spec {text!r}: ")


def _check_device(text: str, device: Optional[str]) -> Optional[str]:
    ok = (
        device is None
        or isinstance(device, str)
        and (device in ("cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()))
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
