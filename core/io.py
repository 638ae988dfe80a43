"""Atomic result files and the one error type the CLI turns into a clean message.

Every result the harness writes goes through `atomic_write`: the bytes land in a temporary file in the same
folder, are flushed to disk, and only then renamed over the target, so an interrupted run leaves the previous
result intact and never a half-written one. The temporary file's name carries the writer's process id, so a later
run removes what a killed one left (`remove_leftovers`).

Every folder the harness writes into or deletes from is reached through `confined`: inside the folder it belongs
to, with no symbolic link on the way, so a results folder from someone else cannot lead a write elsewhere. Every
JSON file is read through `read_json`, which refuses what no writer here writes (NaN, Infinity, integers past 64
bits, deep nesting, files past MAX_JSON_BYTES) naming the file and the field.
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
                errno.EISDIR, errno.ENAMETOOLONG}
# What to do about each cause; the rest: the folder or the path itself.
_REMEDY = {errno.ENOSPC: "the disk is full: free disk space or choose another output folder",
           errno.EDQUOT: "the disk quota is used up: free space or choose another output folder",
           errno.EROFS: "the file system is read-only: choose another output folder",
           errno.EACCES: "make the folder writable or choose another output folder",
           errno.EPERM: "make the folder writable or choose another output folder",
           errno.ENOTDIR: "a part of the path is a file, not a folder: remove it or choose another output folder"}
NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems


def _write_error(path, e):
    if e.errno == errno.ENAMETOOLONG:
        longest = max(Path(path).parts, key=lambda p: len(p.encode()))
        remedy = (f"a name of {len(longest.encode())} bytes (with the temporary file's prefix, more than the "
                  f"{NAME_MAX} a file name may have): choose a shorter name")
    else:
        remedy = _REMEDY.get(e.errno, "choose another output folder")
    return UserError(f"{path}: cannot write it ({e.strerror or e}); {remedy}; the previous file is intact")


def confined(root, relative="") -> Path:
    """`root / relative`, after checking that it stays inside `root` with no symbolic link on the way (the final
    part included): every folder the harness writes into or deletes from, and the files it replaces, are reached
    through here. `root` itself is the folder the user named and may be anything."""
    root, path = Path(root), Path(root)
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise UserError(f"{relative!r} is not a path inside {root}; the harness writes only inside it")
    for part in rel.parts:
        path = path / part
        if path.is_symlink():
            raise UserError(f"{path} is a symbolic link (to {os.readlink(path)}); the harness writes only inside "
                            f"{root}, never through a link: remove the link (it is recreated as a plain "
                            f"{'file' if part == rel.name and '.' in part else 'folder'}) and rerun")
    return path


def _owner(tmp_name):
    """The process id in a temporary file's name (`.NAME.PID.RANDOM.tmp`), or None."""
    parts = tmp_name.split(".")
    return int(parts[-3]) if len(parts) >= 5 and parts[-3].isdigit() else None


def alive(pid):
    """Whether process `pid` still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_leftovers(folder, name="*"):
    """Delete the temporary files `atomic_path` left in `folder` (for the file `name`, in a folder shared with
    others) when its process was killed (SIGKILL, a power cut): those whose process has ended; a writer still
    running keeps its own."""
    try:
        names = [p for p in Path(folder).glob(f".{name}.*.tmp") if p.is_file() and not p.is_symlink()]
    except OSError:
        return
    for p in names:
        pid = _owner(p.name)
        if pid is not None and pid != os.getpid() and not alive(pid):
            p.unlink(missing_ok=True)


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
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
    """`obj` as standard JSON: NaN and Infinity, which no reader here accepts, are refused."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
    except ValueError as e:
        raise UserError(f"{path}: not written: {e} (NaN or Infinity is not JSON); give finite numbers") from None
    atomic_write(path, text + "\n")


MAX_JSON_BYTES = 1 << 30  # a benchmark file with every round's times stays far below
MAX_DEPTH = 64  # the harness nests a few levels; a deeper file is not one of its
MAX_INT = 2 ** 63  # counts, bytes and seeds fit 64 bits; a longer integer is not a measurement


def _refuse_constant(token):
    raise ValueError(f"{token} is not a number JSON allows")


def _plain(tree, path):
    """Raise UserError at the first value no writer here writes: too deep, an integer past 64 bits, NaN or
    Infinity (iterative: the depth is what is being checked)."""
    stack = [(tree, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UserError(f"{path}: {where}: nested more than {MAX_DEPTH} levels deep; not a file the harness "
                            f"writes: delete it and re-run the step that writes it")
        if isinstance(value, dict):
            stack += [(v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= MAX_INT:
            raise UserError(f"{path}: {where or 'the value'}: an integer of {len(str(abs(value)))} digits is past "
                            f"the 64-bit range of every count here; not a file the harness writes")


def read_json(path):
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a folder, or a FIFO that would block the read forever
            raise UserError(f"{path} is {_kind(mode)}, not a JSON file; give the file's path")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise UserError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_JSON_BYTES} of any JSON file "
                            f"the harness writes; give the right file")
        tree = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a file the harness writes; delete it and re-run the step "
                        f"that writes it") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, NaN or Infinity, an integer of 4300+ digits
        raise UserError(f"{path}: not valid JSON ({e}); delete it and re-run the step that writes it") from None
    _plain(tree, path)
    return tree
