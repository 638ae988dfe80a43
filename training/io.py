"""Atomic result files and the one error type the CLI turns into a clean message.

Every result the harness writes goes through `atomic_write`: the bytes land in a temporary file in the same
folder, are flushed to disk, and only then renamed over the target, so an interrupted run leaves the previous
result intact and never a half-written one.
"""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input from the user (a file, a value, a missing folder). The CLI prints it as one line, exit 2."""


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private (0600); a result file gets the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def require_writable(folder, option):
    """Create `folder` if needed and write a file in it, so a long run cannot fail at its end for want of a place to
    write; a UserError names the folder and the `option` that moves it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"cannot write to {folder} ({e.strerror or e}); give a writable folder with {option}") from None


def atomic_write(path, data: bytes | str):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); delete it and re-run the step that writes it") from None
