"""A cache of the reference images' half of a distance, for the one reference batch in use.

ALMA measures ``D(x, x~)`` at every step against the same originals ``x`` (the same tensor
object), so what depends on ``x`` alone (its CIELAB values, its blur statistics) can be computed
once. A stale entry would silently measure against the wrong images, so an entry is reused only
for the very tensor it was made from (held weakly: the entry is dropped with the tensor), at the
same PyTorch version counter (in-place writes bump it), with the same shape, dtype and device,
and with equal contents: a copy of the reference is kept and compared at every use (one
comparison kernel), which also catches writes the version counter does not see (through
``.data``, or through NumPy memory shared with ``torch.from_numpy``).

Only eager, concrete tensors are cached: a reference that requires a gradient, an inference
tensor, or a tensor seen while ``torch.compile`` traces is prepared afresh at every call.
"""

import threading
import weakref
from typing import Any, Callable, Generic, NamedTuple, Optional, TypeVar

Prepared = TypeVar("Prepared")


class _Entry(NamedTuple):
    reference: "weakref.ref[Any]"
    version: int
    copy: Any
    prepared: Any


class ReferenceCache(Generic[Prepared]):
    """``prepare(reference)`` for PyTorch tensors, computed once per reference batch.

    Args:
        prepare: The reference's half of a distance (a pure function of the tensor's values).
    """

    def __init__(self, prepare: Callable[[Any], Prepared]):
        self._prepare = prepare
        self._entry: Optional[_Entry] = None
        self._lock = threading.Lock()
        self.hits = 0  # for tests and the bench: how often an entry was reused
        self.misses = 0

    def __call__(self, reference: Any) -> Prepared:
        """The prepared half for ``reference`` (a ``torch.Tensor``), from the cache if valid."""
        if not _cacheable(reference):
            return self._prepare(reference)
        entry = self._entry
        if entry is not None and _same(entry, reference):
            self.hits += 1
            prepared: Prepared = entry.prepared
            return prepared
        self.misses += 1
        prepared = self._prepare(reference)
        self._store(reference, prepared)
        return prepared

    def clear(self) -> None:
        """Forget the entry (and the memory it holds)."""
        self._entry = None

    def _store(self, reference: Any, prepared: Prepared) -> None:
        def drop(dead: "weakref.ref[Any]") -> None:
            with self._lock:
                if self._entry is not None and self._entry.reference is dead:
                    self._entry = None

        copy = reference.detach().clone()
        entry = _Entry(weakref.ref(reference, drop), reference._version, copy, prepared)
        with self._lock:
            self._entry = entry


def _cacheable(reference: Any) -> bool:
    import torch

    if reference.requires_grad or reference.is_inference():
        return False
    compiler = getattr(torch, "compiler", None)
    return not (compiler is not None and compiler.is_compiling())


def _same(entry: _Entry, reference: Any) -> bool:
    """Whether ``entry`` was made from ``reference`` as it is now."""
    import torch

    if id(entry.reference()) != id(reference):  # a dead reference reads None
        return False
    copy = entry.copy
    return (
        entry.version == reference._version
        and reference.shape == copy.shape
        and reference.dtype == copy.dtype
        and reference.device == copy.device
        and bool(torch.equal(reference, copy))
    )
