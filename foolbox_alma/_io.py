"""Files and text, one way each: JSON-able records, atomic writes, Markdown tables.

* :func:`jsonable` turns a record into what JSON holds (NumPy scalars and arrays into numbers and
  lists, non-finite floats into ``None``, anything else into its ``repr``), so that every file the
  package writes reads back the same in any JSON reader.
* :func:`write_atomic` writes through a temporary file in the same folder, flushed to disk
  (``fsync``) and renamed: a process killed at any moment leaves the whole file or none under the
  final name.
* :func:`markdown_table` lays out every table the commands print and write.
"""

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def json_text(value: Any, indent: int = 1) -> str:
    """``value`` as JSON text (through :func:`jsonable`), keys in their given order."""
    return json.dumps(jsonable(value), indent=indent)


def write_atomic(path: Union[str, "os.PathLike[str]"], data: Union[bytes, str]) -> Path:
    """Writes ``data`` to ``path`` through a temporary file, ``fsync`` and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: the header, the separator and one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def plain_text(doc: Optional[str]) -> str:
    """A docstring as terminal text (command help): reST roles (``:mod:`x```) and inline
    literals (````x````) without their markup."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", doc or "")
    return re.sub(r"``([^`]+)``", r"\1", text)
