"""Files: atomic writes, JSON reading, paths shown relative to a folder. Not a paper section.

The one home of what the data, training, evaluation and experiment code does with files (it imports no
other module of the package, so every module may import it):

    write_atomic        write through a temporary file in the same folder, then os.replace() it over
                        the target: a crash mid-write leaves the previous file intact (durable=True also
                        fsyncs the file and the folder, for checkpoints)
    write_json          JSON through write_atomic (the caller picks the indentation and the last line)
    read_json           parse a JSON file; FileNotFoundError / ValueError naming the file
    read_json_or_none   the same, None when the file is missing or not valid JSON (a record to redo)
    relative_path       a path relative to a folder when it lies inside it (records that are committed
                        must not name one machine's folders)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], durable: bool = False
) -> Path:
    """Call `write(f)` on a temporary binary file next to `path`, then os.replace() it over `path`.

    os.replace is atomic on POSIX and Windows: a reader sees the old file or the new one, never half
    of one. The temporary file (.<name>.<pid>.tmp) is removed if anything fails. durable: also fsync
    the file before the rename and the folder after it, so that the rename itself survives a power
    cut (POSIX). Creates the parent folder. Returns `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_json(obj: Any, path: str | os.PathLike[str], indent: int | None = 2, end: str = "") -> Path:
    """Write `obj` as JSON (json.dumps with `indent`, then `end`) atomically. Returns `path`."""
    data = (json.dumps(obj, indent=indent) + end).encode("utf-8")
    return write_atomic(path, lambda f: f.write(data))


def read_json(path: str | os.PathLike[str], what: str = "JSON") -> Any:
    """Parse a JSON file. FileNotFoundError / ValueError naming the file, e.g. 'annotation file X ...'."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} file {path} is not valid JSON: {err}") from err


def read_json_or_none(path: str | os.PathLike[str]) -> Any:
    """The JSON at `path`, or None when it is missing or not valid JSON (then it is simply redone)."""
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return None


def relative_path(path: str | os.PathLike[str], base: str | os.PathLike[str]) -> str | None:
    """`path` relative to the folder `base` (POSIX separators) when it lies inside it, else None."""
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return None
