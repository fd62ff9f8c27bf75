"""An extract's content fingerprint for the prepared-data cache key: its full SHA-256, computed once per version of
the file and remembered in the cache folder.

Why the whole file: the key follows the content, not the name or the folder. The same extract copied elsewhere,
reached through another path or used from another working folder is prepared once; an extract edited in place, even
in the middle and keeping its size, is prepared again. A hash of the first and last MiB would miss such an edit
unless the modification time were in the key too, and a plain copy changes the modification time. Hashing reads the
file once (~1-2 s per GB, less than parsing it); the digest is kept in the process and in
<paths.prepared_dir>/.extract_digests/ under the file's identity (resolved path, size, modification time, inode), so an
unchanged file is read again only by the second process that uses it, when the cache folder did not exist yet for the
first (nothing is created there before a preparation succeeds).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

from cadft.files import file_digest, write_text_atomic

MEMO_DIR = ".extract_digests"
_HEX = re.compile(r"^[0-9a-f]{64}$")
_known: dict[str, str] = {}  # identity -> digest, in this process


def extract_digest(path: Path, prepared_dir: Path) -> str:
    """SHA-256 of `path`'s bytes, from the memo when this version of the file was hashed before."""
    path = Path(path).resolve()
    stat = path.stat()
    identity = f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}\0{stat.st_dev}"
    memo = Path(prepared_dir) / MEMO_DIR / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.sha256"
    with contextlib.suppress(OSError):
        recorded = memo.read_text().strip()
        if _HEX.match(recorded):
            return recorded
    digest = _known.get(identity) or file_digest(path)
    _known[identity] = digest
    if Path(prepared_dir).is_dir():
        with contextlib.suppress(OSError):  # a cache folder that cannot be written: hashed again next time
            write_text_atomic(memo, digest + "\n")
    return digest
