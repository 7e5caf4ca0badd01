"""Data specs: the samples an evaluation attacks, as NumPy arrays in the model's layout and units.

Accepted forms (:func:`load_data`):

* ``mnist-heldout``: the 1000 held-out MNIST test images shipped with the package (t10k images
  9000..9999, never seen in training; indices 0..999 here), and ``<name>-heldout`` for the
  held-out set of any zoo model or data set (``colour-mnist-heldout``, ``colour-cnn-heldout``);
* an ``.npz`` file with arrays ``x`` (N images, channels-first or channels-last) and ``y`` (N
  integer labels), and optionally ``targets`` (N target classes, for a targeted evaluation).
  ``uint8`` images are read as 0..255 and mapped to [0, 1]; float images are taken as they are,
  in the model's units;
* a folder with one subfolder of images per class (the classes numbered in the sorted order of
  the subfolder names, as torchvision's ``ImageFolder`` does), read with Pillow: RGB, or gray
  when every image is; all of one size or resized to ``image_size`` (bilinear).

Images from sources in [0, 1] (the zoo's sets, ``uint8`` arrays, image files) are mapped to the
model's ``bounds``.
"""

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
DATA_FORMATS = ("channels_first", "channels_last")


@dataclass
class Dataset:
    """Samples to attack: images in the model's layout and units, labels, optional targets."""

    x: np.ndarray
    y: np.ndarray
    targets: Optional[np.ndarray]
    indices: np.ndarray  # each sample's index in the source
    name: str
    data_format: str = "channels_first"
    classes: List[str] = field(default_factory=list)  # class names of an image folder

    def describe(self) -> Dict[str, Any]:
        """JSON-able identity: name, size, layout and a hash of the arrays."""
        h = hashlib.sha256()
        for array in (self.x, self.y, self.targets, self.indices):
            if array is not None:
                h.update(np.ascontiguousarray(array).tobytes())
        return {
            "name": self.name,
            "samples": int(len(self.y)),
            "shape": list(self.x.shape[1:]),
            "dtype": str(self.x.dtype),
            "data_format": self.data_format,
            "first_index": int(self.indices[0]) if len(self.indices) else None,
            "sha256": h.hexdigest()[:16],
        }


def load_data(
    spec: str,
    *,
    data_format: str = "channels_first",
    limit: Optional[int] = None,
    offset: int = 0,
    image_size: Optional[int] = None,
    bounds: Tuple[float, float] = (0, 1),
) -> Dataset:
    """Reads a data spec (see the module docstring) into a :class:`Dataset`.

    Args:
        spec: ``mnist-heldout`` (or ``<zoo model>-heldout``), an ``.npz`` file or an image folder.
        data_format: The model's layout, ``"channels_first"`` or ``"channels_last"``.
        limit: At most this many samples (after ``offset``).
        offset: Skip this many samples.
        image_size: Resize folder images to ``image_size`` x ``image_size``.
        bounds: The model's input bounds, to which [0, 1] sources are mapped.

    Raises:
        ValueError: unknown spec, missing file, bad arrays, empty folder, unreadable image.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    lo, hi = bounds
    targets: Optional[np.ndarray] = None
    classes: List[str] = []
    if spec.endswith("-heldout") and not os.path.exists(spec):
        x, y = _zoo_heldout(spec)
        unit = True
    elif spec.lower().endswith(".npz"):
        x, y, targets, unit = _npz(spec)
    elif os.path.isdir(spec):
        x, y, classes = _image_folder(spec, image_size)
        unit = True
    elif not os.path.exists(spec):
        raise ValueError(
            f"unknown data {spec!r}: use mnist-heldout, an .npz file with arrays x and y, or a "
            "folder with one subfolder of images per class"
        )
    else:
        raise ValueError(f"data file {spec!r} is not an .npz file or an image folder")
    if image_size is not None and not os.path.isdir(spec):
        raise ValueError("image_size resizes image folders only")

    n = len(y)
    if offset >= n:
        raise ValueError(f"offset {offset} is past the end of {spec!r} ({n} samples)")
    stop = n if limit is None else min(n, offset + limit)
    selection = slice(offset, stop)
    x = _layout(np.asarray(x[selection]), data_format, spec)
    if unit:
        x = (x.astype(np.float32) * (hi - lo) + lo).astype(np.float32)
    return Dataset(
        x=np.ascontiguousarray(x),
        y=np.asarray(y[selection], dtype=np.int64),
        targets=None if targets is None else np.asarray(targets[selection], dtype=np.int64),
        indices=np.arange(offset, stop, dtype=np.int64),
        name=spec,
        data_format=data_format,
        classes=classes,
    )


def _zoo_heldout(spec: str) -> Tuple[np.ndarray, np.ndarray]:
    """``<name>-heldout``: the held-out set of a zoo model or data set (``mnist``,
    ``colour-mnist``, ``colour-cnn``...)."""
    from .. import zoo

    name = spec[: -len("-heldout")]
    if name == "mnist":
        return zoo.load_mnist_heldout()
    try:
        return zoo.load_heldout(name)
    except (ValueError, KeyError, OSError):
        known = sorted(set(zoo.HELDOUT_DATA.values()) | set(zoo.ARCHITECTURES))
        raise ValueError(
            f"unknown data {spec!r}: the zoo's held-out sets are "
            f"{', '.join(k + '-heldout' for k in known)}"
        ) from None


def _npz(path: str) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], bool]:
    if not os.path.isfile(path):
        raise ValueError(f"data file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as error:  # noqa: BLE001 - a damaged file, or one holding objects
        raise ValueError(f"cannot read {path!r} as arrays: {error}") from error
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise ValueError(
            f"{path!r} has no array {' or '.join(missing)} (it holds "
            f"{', '.join(arrays) or 'nothing'}); expected x (images), y (labels)"
        )
    x, y, targets = arrays["x"], arrays["y"], arrays.get("targets")
    if x.ndim != 4:
        raise ValueError(
            f"x in {path!r} must be images (N, C, H, W) or (N, H, W, C), got {x.shape}"
        )
    if x.dtype == np.uint8:
        x, unit = x.astype(np.float32) / 255.0, True
    elif np.issubdtype(x.dtype, np.floating):
        unit = False
    else:
        raise ValueError(f"x in {path!r} must be uint8 or floating point, got {x.dtype}")
    for name, array in (("y", y), ("targets", targets)):
        if array is None:
            continue
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"{name} in {path!r} must be a 1-D integer array, got {array.dtype} {array.shape}"
            )
        if len(array) != len(x):
            raise ValueError(f"{path!r} holds {len(x)} images but {len(array)} {name}")
    return x, y, targets, unit


def _image_folder(path: str, image_size: Optional[int]) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    from PIL import Image

    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ValueError(f"image folder {path!r} has no class subfolders (one per class)")
    files: List[Tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        files += [
            (os.path.join(folder, f), label)
            for f in sorted(os.listdir(folder))
            if f.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not files:
        raise ValueError(f"image folder {path!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for file, _ in files:
        try:
            with Image.open(file) as image:
                image.load()
                images.append(image.copy())
        except Exception as error:  # noqa: BLE001
            raise ValueError(f"cannot read image {file!r}: {error}") from error
    gray = all(image.mode in ("L", "1", "I;16", "I") for image in images)
    arrays = []
    first_size = None
    for (file, _), opened in zip(files, images):
        picture = opened.convert("L" if gray else "RGB")
        if image_size is not None:
            picture = picture.resize((image_size, image_size), Image.Resampling.BILINEAR)
        elif first_size is None:
            first_size = (picture.size, file)
        elif picture.size != first_size[0]:
            raise ValueError(
                f"images differ in size ({first_size[1]}: {first_size[0]}, {file}: {picture.size}): "
                "give image_size (--image-size) to resize them"
            )
        array = np.asarray(picture, dtype=np.float32) / 255.0
        arrays.append(array[None] if gray else array.transpose(2, 0, 1))
    labels = np.array([label for _, label in files], dtype=np.int64)
    return np.stack(arrays), labels, classes


def _layout(x: np.ndarray, data_format: str, spec: str) -> np.ndarray:
    """``x`` (N, C, H, W) or (N, H, W, C) in ``data_format``: a channel axis of 1 or 3 entries
    at exactly one of the two places decides; an ambiguous shape is taken as given."""
    first, last = x.shape[1] in (1, 3), x.shape[-1] in (1, 3)
    if first and not last:
        current = "channels_first"
    elif last and not first:
        current = "channels_last"
    else:
        return x  # ambiguous (or neither): the model's probe tells
    if current == data_format:
        return x
    return x.transpose(0, 2, 3, 1) if data_format == "channels_last" else x.transpose(0, 3, 1, 2)
