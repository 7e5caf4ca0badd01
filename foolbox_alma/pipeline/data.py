"""Data specs: the samples an evaluation attacks, as NumPy arrays in the model's layout and units.

Accepted forms (:func:`load_data`):

* ``mnist-heldout``: the zoo's 1000 held-out MNIST images (:func:`foolbox_alma.zoo.load_mnist_heldout`,
  MNIST t10k images 9000..9999, never trained on). Their indices here are 0..999 *within the
  held-out set* (t10k index = 9000 + index). Likewise ``<data set>-heldout`` or ``<zoo
  model>-heldout`` for every held-out set the zoo ships (``colour-mnist-heldout``,
  ``colour-cnn-heldout``, ...: :data:`foolbox_alma.zoo.HELDOUT_DATA`, read at call time);
* an ``.npz`` file with arrays ``x`` (N images, ``(N, C, H, W)`` or ``(N, H, W, C)``; ``(N, H,
  W)`` is taken as one channel) and ``y`` (N integer labels), and optionally ``targets`` (N
  integer target classes, for a targeted evaluation). ``uint8`` images are read as 0..255 and
  scaled to [0, 1]; float images are taken as they are, in the model's units;
* a folder with one subfolder of images per class, as torchvision's ``ImageFolder``: the class
  index of a subfolder is its place among the sorted subfolder names (:attr:`Dataset.classes`),
  files in a subfolder are read in sorted order, hidden files and files without an image suffix
  are skipped. Read with Pillow, converted to RGB (to one gray channel when every image is gray),
  resized to ``image_size`` (``N`` for N x N, or ``(H, W)``; bilinear) when given, and scaled to
  [0, 1]; each sample's file is kept (:attr:`Dataset.files`).

Images are returned in the layout asked for: the channel axis of an ``.npz`` array is the axis of
1 or 3 entries among the second and the last, and an array where both or neither are is an
error. Images from sources known to lie in [0, 1] (the zoo's sets, ``uint8`` arrays, image files)
are mapped to ``bounds`` (``x * (hi - lo) + lo``), so that a model with bounds (0, 255) gets
0..255 images.

``offset`` skips samples and ``limit`` caps how many are taken after it; a ``limit`` past the end
takes what is there (:meth:`Dataset.describe` records the limit asked for and the samples got),
an ``offset`` at or past the end is an error.
"""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import eagerpy as ep
import numpy as np

from .._runtime import check_bounds, to_native
from .errors import EvaluationError

DATA_FORMATS = ("channels_first", "channels_last")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GRAY_MODES = ("1", "L", "LA")

Arrays = Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]


@dataclass
class Dataset:
    """Samples to attack.

    Attributes:
        x: float32 images, ``(N, C, H, W)`` or ``(N, H, W, C)`` as ``data_format`` says, in the
            model's units (``bounds`` for [0, 1] sources).
        y: int64 labels ``(N,)``.
        targets: int64 target classes ``(N,)`` for a targeted evaluation, or None.
        indices: int64 index of each sample in its source: ``offset .. offset + N - 1``.
        name: The spec as given.
        data_format: ``"channels_first"`` or ``"channels_last"``.
        classes: Class names of an image folder (sorted subfolder names), else None.
        offset: Samples skipped at the start of the source.
        limit: The limit asked for (None: all).
        files: For an image folder, each sample's file, relative to the folder.
        source_format: The layout of the source's images (``x`` was put in ``data_format``):
            adversarials are returned in it.
    """

    x: np.ndarray
    y: np.ndarray
    targets: Optional[np.ndarray]
    indices: np.ndarray
    name: str
    data_format: str
    classes: Optional[List[str]] = field(default=None)
    offset: int = 0
    limit: Optional[int] = None
    files: Optional[List[str]] = None
    source_format: Optional[str] = None

    def __len__(self) -> int:
        return int(len(self.y))

    def identity(self) -> Dict[str, Any]:
        """What results depend on (hashed into a run's identity): the arrays themselves (SHA-256
        of the bytes of ``x``, ``y`` and ``targets``), their shape, dtype and layout, and the
        position of the first sample in the source (the indices written). Not the file name: the
        same arrays under another name are the same data, other arrays under the same name
        are not."""
        return {
            "n": len(self),
            "shape": list(self.x.shape),
            "dtype": str(self.x.dtype),
            "data_format": self.data_format,
            "offset": self.offset,
            "sha256": {
                "x": _sha256(self.x),
                "y": _sha256(self.y),
                "targets": None if self.targets is None else _sha256(self.targets),
            },
        }

    def describe(self) -> Dict[str, Any]:
        """JSON-able description: :meth:`identity`, the name, the limit asked for, the classes."""
        return {"name": self.name, "limit": self.limit, "classes": self.classes, **self.identity()}

    def in_source_layout(self, images: np.ndarray) -> np.ndarray:
        """``images`` in this dataset's layout, put back in the source's."""
        if self.source_format in (None, self.data_format):
            return images
        return to_layout(images, self.source_format, self.name)


def load_data(
    spec: str,
    *,
    data_format: str = "channels_first",
    limit: Optional[int] = None,
    offset: int = 0,
    image_size: Union[int, Sequence[int], None] = None,
    bounds: Tuple[float, float] = (0, 1),
) -> Dataset:
    """Reads a data spec (the forms of the module docstring) into a :class:`Dataset`.

    Args:
        spec: ``mnist-heldout`` (or another ``<name>-heldout`` of the zoo), an ``.npz`` file or a
            folder of class subfolders of images.
        data_format: The layout the model takes: ``"channels_first"`` or ``"channels_last"``.
        limit: Take at most this many samples after ``offset`` (positive; None: all).
        offset: Skip this many samples (non-negative, less than the source's size).
        image_size: Resize folder images to ``image_size`` pixels: ``N`` (N x N) or ``(H, W)``
            (image folders only).
        bounds: The model's input bounds ``(lo, hi)``, to which [0, 1] sources are mapped.

    Raises:
        ValueError: an unknown spec, a missing file, an ``.npz`` without ``x`` or ``y``, wrong
            dtypes or shapes, mismatched lengths, an ambiguous channel axis, an empty folder or
            one without class subfolders, an unreadable image (named), images of different
            sizes without ``image_size``, a bad ``offset``, ``limit``, ``image_size`` or
            ``bounds``.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    _check_int("offset", offset, minimum=0)
    if limit is not None:
        _check_int("limit", limit, minimum=1)
    size = None if image_size is None else image_size_of(image_size)
    lo, hi = check_bounds(bounds)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"data spec must be a non-empty string, got {spec!r}; {_accepted()}")

    classes: Optional[List[str]] = None
    files: Optional[List[str]] = None
    is_folder = os.path.isdir(spec)
    if image_size is not None and not is_folder:
        raise ValueError(f"data {spec!r}: image_size resizes image folders only")
    if is_folder:
        x, y, classes, files = _image_folder(spec, size)
        targets, unit, source = None, True, "channels_last"  # as image files hold them
    elif spec.lower().endswith(".npz"):
        x, y, targets, unit = _npz(spec)
        source = layout_of(x, spec)
    elif spec.endswith("-heldout") and not os.path.exists(spec):
        x, y = _zoo_heldout(spec)
        targets, unit, source = None, True, "channels_first"
    elif os.path.exists(spec):
        raise ValueError(f"data {spec!r} is neither an .npz file nor a folder; {_accepted()}")
    else:
        raise ValueError(f"unknown data {spec!r} (no such file or folder); {_accepted()}")

    n = len(y)
    if offset >= n:
        raise ValueError(f"data {spec!r}: offset {offset} is past its last sample ({n} samples)")
    stop = n if limit is None else min(n, offset + limit)
    x = to_layout(x[offset:stop], data_format, spec)
    x = x.astype(np.float32) * np.float32(hi - lo) + np.float32(lo) if unit else x
    return Dataset(
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=np.asarray(y[offset:stop], dtype=np.int64),
        targets=None if targets is None else np.asarray(targets[offset:stop], dtype=np.int64),
        indices=np.arange(offset, stop, dtype=np.int64),
        name=spec,
        data_format=data_format,
        classes=classes,
        offset=int(offset),
        limit=None if limit is None else int(limit),
        files=None if files is None else files[offset:stop],
        source_format=source,
    )


def layout_of(x: np.ndarray, name: str = "x") -> str:
    """``"channels_first"`` or ``"channels_last"``: the one of axis 1 and the last axis that has
    1 or 3 entries; when both or neither do, the layout cannot be told and this is an error."""
    first, last = x.shape[1] in (1, 3), x.shape[-1] in (1, 3)
    if first == last:
        raise ValueError(
            f"data {name!r}: cannot tell the channel axis of images of shape {x.shape}: "
            "expected 1 or 3 channels on axis 1 (N, C, H, W) or on the last axis (N, H, W, C), "
            "not on both or neither"
        )
    return "channels_first" if first else "channels_last"


def to_layout(x: np.ndarray, data_format: str, name: str = "x") -> np.ndarray:
    """``x`` (N, C, H, W) or (N, H, W, C) in ``data_format``.

    The channel axis is the one of 1 or 3 entries among axis 1 and the last axis; when both or
    neither are, the layout cannot be told and this is an error.
    """
    if layout_of(x, name) == data_format:
        return x
    return x.transpose(0, 2, 3, 1) if data_format == "channels_last" else x.transpose(0, 3, 1, 2)


def as_dataset(data: Any, fmodel: Any, **kwargs: Any) -> Dataset:
    """``data`` as a :class:`Dataset` in ``fmodel``'s layout and units: a data spec (read with
    :func:`load_data`, ``kwargs`` its ``limit``, ``offset``, ``image_size``), a Dataset, or a tuple
    ``(x, y[, targets])`` of arrays or tensors already in the model's layout and units."""
    data_format = getattr(fmodel, "data_format", None) or "channels_first"
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return load_data(str(data), data_format=data_format, bounds=tuple(fmodel.bounds), **kwargs)
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        arrays = [
            None
            if a is None
            else np.asarray(ep.astensor(a).numpy() if not isinstance(a, np.ndarray) else a)
            for a in data
        ]
        x, y = arrays[0], arrays[1]
        t = arrays[2] if len(arrays) == 3 else None
        for name, a in (("labels", y), ("targets", t)):
            if a is not None and (a.ndim != 1 or a.dtype.kind not in "iu"):
                raise EvaluationError(
                    f"{name} must be a 1-D integer array, got {a.dtype} {a.shape}"
                )
        if y is None or x is None or len(x) != len(y) or (t is not None and len(t) != len(y)):
            raise EvaluationError(
                "data (x, y[, targets]) must have one label (and target) per input"
            )
        lo = kwargs.get("offset") or 0
        hi = len(y) if kwargs.get("limit") is None else lo + kwargs["limit"]
        sl = slice(lo, hi)
        return Dataset(
            x=np.ascontiguousarray(x[sl]),
            y=y[sl].astype(np.int64),
            targets=t[sl].astype(np.int64) if t is not None else None,
            indices=np.arange(len(y), dtype=np.int64)[sl],
            name="arrays",
            data_format=data_format,
        )
    raise EvaluationError(
        "data must be a spec ('mnist-heldout', a .npz file, an image folder), a Dataset or "
        f"a tuple (x, y[, targets]), got {type(data).__name__}"
    )


def probe(fmodel: Any, dataset: Dataset) -> int:
    """Runs the model on two samples: the data's shape and dtype must suit it, the data must lie
    in its bounds and the labels in its classes. Returns the number of classes."""
    lo, hi = fmodel.bounds
    x = dataset.x
    if not np.issubdtype(x.dtype, np.floating):
        raise EvaluationError(f"inputs must be floating point, got {x.dtype}")
    if not np.isfinite(x).all():
        raise EvaluationError("inputs contain NaN or inf")
    if x.min() < lo or x.max() > hi:
        raise EvaluationError(
            f"inputs lie in [{x.min():g}, {x.max():g}], outside the model's bounds ({lo:g}, {hi:g})"
        )
    sample = x[:2]
    try:
        logits = fmodel(to_native(fmodel, sample))
        shape = tuple(np.asarray(ep.astensor(logits).numpy()).shape)
    except Exception as error:  # noqa: BLE001 - the model's own error, named
        raise EvaluationError(
            f"the model rejects inputs of shape {tuple(sample.shape)[1:]} ({x.dtype}, "
            f"{getattr(fmodel, 'data_format', None) or 'channels_first'}): "
            f"{type(error).__name__}: {error}"
        ) from error
    if len(shape) != 2 or shape[0] != len(sample):
        raise EvaluationError(
            f"the model returned outputs of shape {shape}; expected (batch, classes)"
        )
    check_classes("labels", dataset.y, shape[1])
    return shape[1]


def check_classes(name: str, values: Optional[np.ndarray], num_classes: int) -> None:
    """Class indices ``values`` (None: nothing to check) inside ``[0, num_classes)``."""
    if values is None or not len(values):
        return
    if values.min() < 0 or values.max() >= num_classes:
        raise EvaluationError(
            f"{name} out of range: they span [{values.min()}, {values.max()}] but the model has "
            f"{num_classes} classes (0..{num_classes - 1})"
        )


# --- sources --------------------------------------------------------------------------------------


def _zoo_heldout(spec: str) -> Tuple[np.ndarray, np.ndarray]:
    """``<name>-heldout``: a held-out set of the zoo, by data set or by zoo model name."""
    from .. import zoo

    name = spec[: -len("-heldout")]
    if name == "mnist":
        return zoo.load_mnist_heldout()
    known = {*zoo.HELDOUT_DATA.values(), *zoo.ARCHITECTURES}
    if name not in known:
        raise ValueError(f"unknown data {spec!r}; {_accepted()}")
    return zoo.load_heldout(name)


def _npz(path: str) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], bool]:
    """The arrays of an ``.npz`` file and whether ``x`` was ``uint8`` (so now in [0, 1])."""
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # a damaged file, not a zip, or one holding Python objects
        raise ValueError(f"data file {path!r} cannot be read as .npz arrays: {error}") from error
    missing = [key for key in ("x", "y") if key not in arrays]
    if missing:
        raise ValueError(
            f"data file {path!r} has no array {' or '.join(missing)} (it holds "
            f"{', '.join(sorted(arrays)) or 'no arrays'}); expected x (images), y (labels) and "
            "optionally targets"
        )
    x, y, targets = arrays["x"], arrays["y"], arrays.get("targets")
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W): one channel
    if x.ndim != 4:
        raise ValueError(
            f"data file {path!r}: x must hold images (N, C, H, W) or (N, H, W, C), got shape "
            f"{x.shape}"
        )
    if x.dtype == np.uint8:
        x, unit = x.astype(np.float32) / np.float32(255), True
    elif np.issubdtype(x.dtype, np.floating):
        x, unit = x.astype(np.float32, copy=False), False
    else:
        raise ValueError(
            f"data file {path!r}: x must be uint8 (0..255) or floating point, got {x.dtype}"
        )
    for key, array in (("y", y), ("targets", targets)):
        if array is None:
            continue
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"data file {path!r}: {key} must be a 1-D integer array, got {array.dtype} of "
                f"shape {array.shape}"
            )
        if len(array) != len(x):
            raise ValueError(
                f"data file {path!r}: x holds {len(x)} images but {key} holds {len(array)} values"
            )
    return x, y, targets, unit


def image_size_of(value: Any) -> Tuple[int, int]:
    """``(height, width)`` from ``N`` (N x N) or ``(H, W)``: positive integers, else an error."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        _check_int("image_size", value, minimum=1)
        return int(value), int(value)
    sizes = list(value) if isinstance(value, (list, tuple)) else []
    if len(sizes) not in (1, 2) or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in sizes
    ):
        raise ValueError(
            f"image_size must be a positive integer N (N x N) or two (height, width), got {value!r}"
        )
    return int(sizes[0]), int(sizes[-1])


def _image_folder(
    path: str, image_size: Optional[Tuple[int, int]]
) -> Tuple[np.ndarray, np.ndarray, List[str], List[str]]:
    """Images (N, C, H, W) in [0, 1], labels, class names and files (relative to the folder) of
    an ImageFolder-style folder."""
    from PIL import Image

    classes = sorted(
        entry
        for entry in os.listdir(path)
        if not entry.startswith(".") and os.path.isdir(os.path.join(path, entry))
    )
    if not classes:
        raise ValueError(
            f"image folder {path!r} has no class subfolders; expected one subfolder of images "
            "per class (class index = place in the sorted subfolder names)"
        )
    files: List[Tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        files += [
            (os.path.join(folder, entry), label)
            for entry in sorted(os.listdir(folder))
            if not entry.startswith(".") and entry.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not files:
        raise ValueError(
            f"image folder {path!r} is empty: its subfolders ({', '.join(classes)}) hold no "
            f"images ({', '.join(IMAGE_SUFFIXES)})"
        )
    images = [_read_image(file) for file, _ in files]
    gray = all(image.mode in _GRAY_MODES for image in images)
    arrays = []
    first: Optional[Tuple[str, Tuple[int, int]]] = None
    for (file, _), image in zip(files, images):
        image = image.convert("L" if gray else "RGB")
        if image_size is not None:
            height, width = image_size
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        elif first is None:
            first = (file, image.size)
        elif image.size != first[1]:
            raise ValueError(
                f"image folder {path!r}: images differ in size ({first[0]} is {first[1][0]}x"
                f"{first[1][1]}, {file} is {image.size[0]}x{image.size[1]}); give image_size "
                "(--image-size) to resize them all"
            )
        array = np.asarray(image, dtype=np.float32) / np.float32(255)
        arrays.append(array[None] if gray else array.transpose(2, 0, 1))
    labels = np.array([label for _, label in files], dtype=np.int64)
    names = [os.path.relpath(file, path) for file, _ in files]
    return np.stack(arrays), labels, classes, names


def _read_image(file: str) -> Any:
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.load()
            return image.copy()
    except Exception as error:
        raise ValueError(f"cannot read image {file!r}: {type(error).__name__}: {error}") from error


# --- checks ---------------------------------------------------------------------------------------


def _accepted() -> str:
    from .. import zoo

    heldout = sorted({"mnist", *zoo.HELDOUT_DATA.values()})
    return (
        f"accepted: a zoo held-out set ({', '.join(name + '-heldout' for name in heldout)}), an "
        ".npz file with arrays x and y (and optionally targets), or a folder with one subfolder "
        "of images per class"
    )


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive" if minimum == 1 else "a non-negative"
        raise ValueError(f"{name} must be {what} integer, got {value!r}")


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
