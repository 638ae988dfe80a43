"""Atomic result files and the one error type the CLI turns into a clean message.

Every result the harness writes goes through `atomic_write`: the bytes land in a temporary file in the same
folder, are flushed to disk, and only then renamed over the target, so an interrupted run leaves the previous
result intact and never a half-written one.
"""
import errno
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input from the user (a file, a value, a missing folder). The CLI prints it as one line, exit 2."""


# What a full disk or a folder we may not write in raise: one line naming the file, not a traceback.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
                errno.EISDIR}


def _write_error(path, e):
    return UserError(f"{path}: cannot write it ({e.strerror or e}); free disk space, make the folder writable or "
                     f"choose another output folder; the previous file is intact")


def require_writable_dir(folder, what):
    """Raise UserError unless `folder` is a folder we can write in (created if absent): checked before any work,
    so a bad --out fails now and not after minutes of training. `what` names the option ("--out")."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what} {folder} is a file, not a folder; give a folder (it is created if absent)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise UserError(f"{what} {folder}: cannot write there ({e.strerror or e}); make it writable or give "
                        f"another {what}") from None


def _kind(mode):
    """What a file that is not a regular one is, in words."""
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a socket" if stat.S_ISSOCK(mode) else "a device"


def require_regular_target(path, what=""):
    """Raise UserError when `path` exists and is not a regular file (after links): a result replaces a file of its
    own, never a folder, a FIFO or a device such as /dev/null. `what` names the option ("--json")."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # absent (or unreadable: the write itself will say so)
        return
    if not stat.S_ISREG(mode):
        raise UserError(f"{what + ' ' if what else ''}{path} is {_kind(mode)}, not a regular file; a result is "
                        f"written only to a new or a regular file: give another path")


@contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success rename it over `path`, on failure delete it. A `path` that
    exists and is not a regular file is refused, before and after the writer runs."""
    path = Path(path)
    require_regular_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); a result file gets the usual permissions. Set after the writer
        # ran: safetensors >= 0.7 writes a file of its own (0600 again) and renames it over `tmp`.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        require_regular_target(path)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            raise _write_error(path, e) from None
        raise


def atomic_write(path, data: bytes | str):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a folder, or a FIFO that would block the read forever
            raise UserError(f"{path} is {_kind(mode)}, not a JSON file; give the file's path")
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e}); delete it and re-run the step that writes it") from None
