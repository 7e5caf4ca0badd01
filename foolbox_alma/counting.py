"""Counting forward and backward passes, per sample, instead of assuming them.

Two ways, both counting samples (a batch of 200 counts 200):

* PyTorch, when the ``torch.nn.Module`` is at hand (:func:`count_torch_passes`): a forward
  pre-hook and a full backward hook on the module count every pass, including passes made by code
  that calls the module directly (adv_lib's attacks).
* Any Foolbox model (:class:`CountingModel`): a wrapper whose ``__call__`` sends the input through
  an identity with a custom gradient before the real model. The identity counts a forward pass
  when it runs and a backward pass when its gradient runs, and does so *inside compiled code*:
  on TensorFlow it increments ``tf.Variable`` counters (``tf.custom_gradient``; the assignments
  run in ``tf.function`` graphs as they do eagerly), on JAX it calls back to Python with
  ``jax.debug.callback`` from a ``jax.custom_vjp`` (so a ``jax.jit``-compiled step counts every
  time it runs, not once when traced), on PyTorch it is a ``torch.autograd.Function``.

:func:`counted_model` picks the first way where it can and the second otherwise.
"""

import contextlib
import functools
from typing import Any, Callable, Iterator, Optional, Tuple

import eagerpy as ep
import foolbox as fb


class PassCounter:
    """Forward and backward passes, counted in samples (a batch of 200 counts 200).

    ``listener``, when set, is called with the number of samples of every backward pass counted
    live (PyTorch and JAX; TensorFlow counts inside its graphs and is read at the end). While
    ``paused`` is set, passes are not counted (the benchmark's own timing passes).
    """

    def __init__(self) -> None:
        self.forward_samples = 0
        self.backward_samples = 0
        self.listener: Optional[Callable[[int], object]] = None  # its result is ignored
        self.paused = False

    def add(self, forwards: int = 0, backwards: int = 0) -> None:
        if self.paused:
            return
        self.forward_samples += forwards
        self.backward_samples += backwards
        if backwards and self.listener is not None:
            self.listener(backwards)

    def per_sample(self, n: int) -> "tuple[float, float]":
        return self.forward_samples / n, self.backward_samples / n

    def reset(self) -> None:
        self.forward_samples = 0
        self.backward_samples = 0


class count_torch_passes:
    """Context manager counting the passes through a ``torch.nn.Module``.

    Example:
        with count_torch_passes(net) as counter:
            attack.run(fmodel, x, y)
        forwards, backwards = counter.per_sample(len(x))
    """

    def __init__(self, module: Any):
        self.module = module
        self.counter = PassCounter()
        self._handles: list = []

    def __enter__(self) -> PassCounter:
        counter = self.counter

        def on_forward(module: Any, args: Any) -> None:
            counter.add(forwards=len(args[0]))

        def on_backward(module: Any, grad_input: Any, grad_output: Any) -> None:
            counter.add(backwards=len(grad_output[0]))

        self._handles = [
            self.module.register_forward_pre_hook(on_forward),
            self.module.register_full_backward_hook(on_backward),
        ]
        return counter

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def torch_module_of(model: Any) -> Optional[Any]:
    """The ``torch.nn.Module`` inside a ``fb.PyTorchModel`` (None for anything else).

    Foolbox keeps the module only in the closure of the function it wraps it in.
    """
    if not isinstance(model, fb.PyTorchModel):
        return None
    import torch

    for cell in getattr(model._model, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, torch.nn.Module):
            return value
    return None


class CountingModel(fb.Model):
    """A Foolbox model that counts the forward and backward passes through ``model``.

    Works eagerly and inside ``tf.function`` / ``jax.jit``-compiled code (see the module
    docstring). Read the counts with :attr:`counter` (it first waits for pending JAX callbacks).

    Args:
        model: The Foolbox model to count (PyTorch, TensorFlow or JAX).
    """

    def __init__(self, model: fb.Model):
        self.model = model
        self._counter = PassCounter()
        self._identity: Any = None
        self._framework: Optional[str] = None
        self._tf_counts: Any = None
        if isinstance(model, fb.TensorFlowModel):
            # its counters now, eagerly: made inside the first compiled step's trace, they would
            # make TensorFlow trace that step again on its next call
            self._framework = "tensorflow"
            self._identity, self._tf_counts = _tensorflow_identity()

    @property
    def bounds(self) -> Any:
        return self.model.bounds

    @property
    def data_format(self) -> Any:
        return getattr(self.model, "data_format", None)

    def __getattr__(self, name: str) -> Any:  # device, preprocessing, ... of the wrapped model
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, inputs: Any) -> Any:
        x, restore_type = ep.astensor_(inputs)
        if self._identity is None:
            self._build(x)
        counted = ep.astensor(self._identity(x.raw))
        return restore_type(self.model(counted))

    @property
    def counter(self) -> PassCounter:
        if self._framework == "tensorflow":
            forwards, backwards = (int(v.numpy()) for v in self._tf_counts)
            self._counter.forward_samples = forwards
            self._counter.backward_samples = backwards
        elif self._framework == "jax":
            import jax

            jax.effects_barrier()  # the callbacks of steps still running
        return self._counter

    def reset(self) -> None:
        self._counter.reset()
        if self._tf_counts is not None:
            for v in self._tf_counts:
                v.assign(0)

    def _build(self, x: ep.Tensor) -> None:
        if isinstance(x, ep.PyTorchTensor):
            self._framework, self._identity = "pytorch", _torch_identity(self._counter)
        elif isinstance(x, ep.TensorFlowTensor):
            self._framework = "tensorflow"
            self._identity, self._tf_counts = _tensorflow_identity()
        elif isinstance(x, ep.JAXTensor):
            self._framework, self._identity = "jax", _jax_identity(self._counter)
        else:
            raise TypeError(f"cannot count passes on {type(x).__name__} inputs")


def _torch_identity(counter: PassCounter) -> Any:
    import torch

    class CountPasses(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            counter.add(forwards=len(x))
            return x.view_as(x)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            counter.add(backwards=len(grad))
            return grad

    return CountPasses.apply


def _tensorflow_identity() -> Tuple[Any, Tuple[Any, Any]]:
    import tensorflow as tf

    forwards = tf.Variable(0, dtype=tf.int64, trainable=False, name="forward_samples")
    backwards = tf.Variable(0, dtype=tf.int64, trainable=False, name="backward_samples")

    @tf.custom_gradient
    def pass_through(x: Any) -> Any:
        def grad(dy: Any) -> Any:
            backwards.assign_add(tf.cast(tf.shape(dy)[0], tf.int64))
            return dy

        return tf.identity(x), grad

    def identity(x: Any) -> Any:
        # counted outside the custom_gradient: TF rejects variables read inside its forward
        forwards.assign_add(tf.cast(tf.shape(x)[0], tf.int64))
        return pass_through(x)

    return identity, (forwards, backwards)


def _jax_identity(counter: PassCounter) -> Any:
    import jax

    def add_forwards(n: int) -> None:
        counter.add(forwards=n)

    def add_backwards(n: int) -> None:
        counter.add(backwards=n)

    @jax.custom_vjp
    def identity(x: Any) -> Any:
        jax.debug.callback(functools.partial(add_forwards, x.shape[0]))
        return x

    def forward(x: Any) -> Any:
        jax.debug.callback(functools.partial(add_forwards, x.shape[0]))
        return x, None

    def backward(_: Any, grad: Any) -> Any:
        jax.debug.callback(functools.partial(add_backwards, grad.shape[0]))
        return (grad,)

    identity.defvjp(forward, backward)
    return identity


@contextlib.contextmanager
def counted_model(model: fb.Model) -> Iterator[Tuple[fb.Model, Any, "CountingResult"]]:
    """Counts the passes of everything run inside the block.

    Yields ``(fmodel, module, result)``: the Foolbox model to attack, the ``torch.nn.Module``
    to give attacks that call a PyTorch module directly (None off PyTorch), and a
    :class:`CountingResult` whose ``counter`` holds the counts (read it after the block; compare
    readings taken before and after what is measured).
    On a ``fb.PyTorchModel`` the module's hooks count and ``fmodel`` is the model itself;
    elsewhere ``fmodel`` is a :class:`CountingModel`, the same one every time for the same model:
    the attack's compiled steps are cached per model they see, so a new wrapper per batch or
    shard would trace them again (seconds on a large TensorFlow model).
    """
    module = torch_module_of(model)
    result = CountingResult()
    if module is not None and _is_script_module(module):
        model, module = hookable_model(model, module)
    if module is not None:
        with count_torch_passes(module) as counter:
            result._counter = counter
            yield model, module, result
        return
    counting = counting_model_of(model)
    result._source = counting
    yield counting, None, result


def _is_script_module(module: Any) -> bool:
    import torch

    return isinstance(module, torch.jit.ScriptModule)


def hookable_model(model: Any, module: Any) -> Tuple[fb.Model, Any]:
    """A ``fb.PyTorchModel`` whose module takes hooks, for a model whose module is TorchScript
    (scripted or traced modules refuse forward and backward hooks): the same bounds, device and
    preprocessing around a plain ``torch.nn.Module`` that calls the TorchScript module. Made
    once per model and kept on it."""
    cached = getattr(model, _HOOKABLE_ATTRIBUTE, None)
    if cached is not None and cached[1].inner is module:
        return cached
    import torch

    class ScriptModuleHost(torch.nn.Module):
        """Calls a TorchScript module; hooks on this module see every pass through it."""

        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner
            self.train(inner.training)

        def forward(self, x: Any) -> Any:
            return self.inner(x)

    host = ScriptModuleHost(module)
    wrapped = fb.PyTorchModel(host, bounds=model.bounds, device=getattr(model, "device", None))
    wrapped._preprocess_args = model._preprocess_args  # Foolbox's (mean, std, axis)
    pair = (wrapped, host)
    try:
        setattr(model, _HOOKABLE_ATTRIBUTE, pair)
    except AttributeError:
        pass
    return pair


_HOOKABLE_ATTRIBUTE = "_foolbox_alma_hookable"


def counting_model_of(model: fb.Model) -> "CountingModel":
    """The :class:`CountingModel` of ``model``, made once and kept on the model itself (a
    reference cycle the garbage collector frees with the model; a cache keyed by the model would
    keep it alive)."""
    counting = getattr(model, _COUNTING_ATTRIBUTE, None)
    if isinstance(counting, CountingModel) and counting.model is model:
        return counting
    counting = CountingModel(model)
    try:
        setattr(model, _COUNTING_ATTRIBUTE, counting)
    except AttributeError:  # a model that takes no attributes gets a new wrapper each time
        pass
    return counting


_COUNTING_ATTRIBUTE = "_foolbox_alma_counting"


class CountingResult:
    """The counts of a :func:`counted_model` block."""

    def __init__(self) -> None:
        self._counter: Optional[PassCounter] = None
        self._source: Optional[CountingModel] = None

    @property
    def counter(self) -> PassCounter:
        if self._source is not None:
            return self._source.counter
        assert self._counter is not None
        return self._counter
