"""Atomic file writes, hashing and reading user JSON files.

Every output atool writes goes through here: a temp file in the same folder,
fsync'd, then renamed over the target, so a crash never leaves half a file
under its final name and never destroys the file that was there before.

Temp names are ``.<name>.<pid>.tmp<random><suffix>`` (hidden, so folder
listings skip them; the suffix kept so encoders that choose by suffix work).
A process killed mid-write (kill -9, power loss) leaves its temp file behind;
the next process that writes into the same folder removes every such file
whose writer process is gone. A write that fails because the disk is full or the file-size
limit is reached (ENOSPC, EDQUOT, EFBIG) removes its temp file and becomes a
one-line ``Failure``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from atool.core.errors import BadInput, Failure

# errno values that mean "no room": the disk, the user's quota, or RLIMIT_FSIZE (EFBIG).
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp")
# Folders this process already swept for dead writers' temps: once each, so writing
# n files into one folder costs one listing, not n.
_swept: set[str] = set()


def temp_prefix(name: str) -> str:
    """The prefix of this process's temp files for a target called ``name``."""
    return f".{name}.{os.getpid()}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of atool's temp files or folders (of any target)."""
    return _TEMP.match(name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove temp files/folders in ``folder`` (of target ``name``, or of any) whose writer is dead.

    A live writer's temps are left alone, so two processes never delete each
    other's work in progress. Returns what was removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        removed.append(path)
    return removed


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError meaning the disk, quota or file-size limit is full."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


class DiskFull(Failure):
    """A write ran out of room (ENOSPC, EDQUOT, or EFBIG past the file-size limit); exit 1."""

    def __init__(self, path: str | os.PathLike, err: int | None, strerror: str | None = None) -> None:
        self.path, self.errno = Path(path), err
        why = "the file-size limit (ulimit -f) was reached" if err == errno.EFBIG else (strerror or "no space left on device").lower()
        super().__init__(f"disk full writing {path}: {why}; nothing was written there and earlier outputs are intact. "
                         "Free some space (or raise the limit) and run the command again")


def disk_full_failure(path: str | os.PathLike, exc: OSError) -> DiskFull:
    """The one-line Failure for a write of ``path`` that ran out of room."""
    return DiskFull(path, exc.errno, exc.strerror)


def _umask() -> int:
    """The process umask, read without changing it where Linux shows it (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; outputs get the usual 0666 & ~umask, like any file the user writes.
_FILE_MODE = 0o666 & ~_umask()


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and rename the result to ``path``.

    ``write`` receives a temp path with the same suffix as ``path`` (so that
    libraries choosing the encoder from the suffix still work). On any
    exception the temp file is removed and ``path`` is left as it was; running
    out of room (ENOSPC, EDQUOT, EFBIG) becomes a one-line ``Failure``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = os.path.abspath(path.parent)
        if folder not in _swept:
            remove_stale_temps(folder)
            _swept.add(folder)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=path.suffix or ".tmp", dir=path.parent)
    except OSError as exc:
        if disk_full(exc):
            raise disk_full_failure(path, exc) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, _FILE_MODE)
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        if disk_full(exc):
            raise disk_full_failure(path, exc) from None  # type: ignore[arg-type]
        raise
    # The folder is not fsync'd here (it would double the cost of writing many small label
    # files): after a power cut the rename may be lost, leaving the old file, never a torn one.
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is BadInput naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{what} {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not UTF-8 text; expected a JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM):  # filesystem or kernel without the flag
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Put folder ``src`` at ``dst``, replacing a folder already there, never leaving ``dst`` half-written.

    Where the kernel can swap two paths atomically, ``dst`` is always either
    the old or the new folder; elsewhere there is a moment between two renames
    when it is absent (the old one then sits under a temp name).
    """
    src, dst = Path(src), Path(dst)
    if not dst.exists():
        os.replace(src, dst)
        return
    if _exchange(src, dst):
        shutil.rmtree(src)  # now the old folder
        return
    old = dst.with_name(f"{temp_prefix(dst.name)}old")
    os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old)


@contextlib.contextmanager
def staged_outputs(out: str | os.PathLike, *, last: str | None = None) -> Iterator[Path]:
    """A hidden staging folder in ``out``; its entries replace those of ``out`` when the block succeeds.

    Use it for outputs that are several files: nothing appears under ``out``
    until all of it is written, and if the block raises (or the process is
    killed), what ``out`` held before is untouched. Each staged folder replaces
    the one of the same name (``replace_dir``), each file with ``os.replace``;
    ``last`` (e.g. a summary that marks the output complete) is moved last.
    Other entries of ``out`` are left alone. Stale staging folders of dead
    processes are removed first.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out, "staging")
        stage = Path(tempfile.mkdtemp(prefix=temp_prefix("staging"), dir=out))
    except OSError as exc:
        if disk_full(exc):
            raise disk_full_failure(out, exc) from None
        raise
    try:
        yield stage
        entries = sorted(stage.iterdir(), key=lambda p: (p.name == last, not p.is_dir(), p.name))
        for entry in entries:
            if entry.is_dir():
                replace_dir(entry, out / entry.name)
            else:
                os.replace(entry, out / entry.name)
        stage.rmdir()
        fsync_dir(out)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if disk_full(exc):
            raise disk_full_failure(out, exc) from None  # type: ignore[arg-type]
        if isinstance(exc, DiskFull) and exc.path.is_relative_to(stage):
            # Name the file the user asked for, not its place in the staging folder.
            raise DiskFull(out / exc.path.relative_to(stage), exc.errno) from None
        raise
