"""Writing files so that a failure never leaves one half-written, and checking a folder can be written before work
starts. The one owner of atomic writes: every file or folder cadft publishes is made complete under a temporary
name in its destination folder (the same filesystem) and renamed into place. Published files and folders get the
modes the user's umask gives ordinary ones (mkstemp and mkdtemp make them private, and so do some libraries'
writers: `with_umask_modes`), so shared filesystems work.

A write that fails for a reason the user fixes on the machine (a full disk or quota, no permission, a read-only
filesystem) is one CadftError naming the path and the errno (`write_failure`, `writing`), whether it comes from
Python (OSError) or from a library's native code (polars, safetensors, tokenizers: "... (os error 28)").
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cadft.errors import CadftError


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder, renamed to `path` on success and removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def staging_dir(parent: Path, prefix: str = ".staging-") -> Iterator[Path]:
    """A temporary folder in `parent` (the same filesystem as what it will replace), removed with whatever is left in
    it."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        folder.chmod(0o777 & ~umask())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish_dir(staging: Path, final: Path) -> None:
    """Rename a complete staging folder to `final`, moving an existing `final` aside first (then deleting it)."""
    if final.exists():
        aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=final.parent))
        with contextlib.suppress(FileNotFoundError):  # another process moved it already
            final.rename(aside / final.name)
        shutil.rmtree(aside, ignore_errors=True)
    os.rename(staging, final)


def check_writable(folder: Path, what: str, *, create: bool = True) -> None:
    """Fail with one clear line when `folder` cannot be written. create=False leaves no trace: it probes the
    nearest folder that exists (a path below a regular file fails there, even for root)."""
    folder = Path(folder)
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        target = folder if create else next(p for p in (folder, *folder.parents) if p.exists())
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
        probe = target / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise CadftError(f"{what} {folder} is not writable ({err.strerror})") from None


def umask() -> int:
    """The process's umask: read from /proc on Linux (setting it to read it would open a moment in which another
    thread's new files are world-writable), else set and restored."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


# errno -> what the user can do about it
WRITE_FAILURES = {
    errno.ENOSPC: "free space there, or write elsewhere (paths.output_dir, out=, --out)",
    errno.EDQUOT: "free space within your quota, or write elsewhere (paths.output_dir, out=, --out)",
    errno.EFBIG: "the file is larger than that filesystem allows: write elsewhere",
    errno.EACCES: "make it writable, or write elsewhere (paths.output_dir, out=, --out)",
    errno.EPERM: "make it writable, or write elsewhere (paths.output_dir, out=, --out)",
    errno.EROFS: "the filesystem is read-only: write elsewhere (paths.output_dir, out=, --out)",
}
_NATIVE = re.compile(r"\(os error (\d+)\)")  # Rust's io::Error (polars, safetensors, tokenizers)


def write_failure(err: BaseException, path: str | Path | None = None) -> CadftError | None:
    """One line for a failed write the user fixes on the machine: the path (`path`, what was being written, else the
    OSError's own, which may be a temporary name) and the errno; None when `err` (or what caused it) is no such
    failure, or names no path."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        code, where = None, path
        if isinstance(err, OSError) and err.errno in WRITE_FAILURES:
            code, where = err.errno, path or err.filename
        elif (match := _NATIVE.search(str(err))) and int(match.group(1)) in WRITE_FAILURES:
            code = int(match.group(1))
        if code is not None and where is not None:
            return CadftError(f"{where}: {os.strerror(code)} ({errno.errorcode[code]}); {WRITE_FAILURES[code]}")
        err = err.__cause__ or err.__context__
    return None


@contextlib.contextmanager
def failures_as_errors(translate: Callable[[Exception], CadftError | None]) -> Iterator[None]:
    """Raise the CadftError `translate` makes of an exception (None: the exception goes on as it is)."""
    try:
        yield
    except CadftError:
        raise
    except Exception as err:
        failure = translate(err)
        if failure is None:
            raise
        raise failure from None


def writing(path: str | Path) -> contextlib.AbstractContextManager[None]:
    """Writes into `path` (a file or a folder) whose failure for want of space or permission is one CadftError."""
    return failures_as_errors(lambda err: write_failure(err, path))


def with_umask_modes(folder: Path) -> None:
    """Give `folder` and everything in it the modes the umask gives new files and folders: libraries that write
    private files (safetensors' 0600) would otherwise lock out the other users of a shared filesystem."""
    mask = umask()
    for path in [Path(folder), *Path(folder).rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()
