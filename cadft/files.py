"""Writing files so that a failure never leaves one half-written, and checking a folder can be written before work
starts. The one owner of atomic writes: every file or folder cadft publishes is made complete under a temporary
name in its destination folder (the same filesystem) and renamed into place. Published files and folders get the
modes the user's umask gives ordinary ones (mkstemp and mkdtemp make them private), so shared filesystems work."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
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
    mask = os.umask(0)
    os.umask(mask)
    return mask
