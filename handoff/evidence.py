"""Evidence files (photos, screenshots, recordings) stored by content under the data directory.

A file lives at ``<root>/ab/cd/<sha256>`` with a ``<sha256>.json`` sidecar that records the
original filename, content type and size it first arrived with. The same bytes are stored once,
whatever they were called. Writes go to a temporary file in the target directory, are fsynced and
then renamed into place, so a file is either absent or complete: never half-written, and never
lost once `put` has returned. Nothing here deletes: evidence is kept for at least three years
(DOMAIN.md, evidence retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

from handoff.errors import EvidenceError, EvidenceNotFound, EvidenceTooLarge
from handoff.intake import EvidenceRef

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
MAX_FILENAME_CHARS = 120
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_CONTENT_TYPE = re.compile(_TOKEN + "/" + _TOKEN)
_UNSAFE = re.compile(r'[\x00-\x1f\x7f<>:"|?*]')


def sanitize_filename(name: str) -> str:
    """A safe display name: no directories, no control or reserved characters, not hidden.

    The stored path never uses the name (it is the SHA-256), so this only keeps what is shown to
    agents and written in the sidecar harmless.
    """
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_FILENAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME_CHARS]
    return name or "file"


def normalize_content_type(value: str | None) -> str:
    """The content type in lower case without parameters; octet-stream when it is not one."""
    if not value:
        return DEFAULT_CONTENT_TYPE
    base = value.split(";", 1)[0].strip().lower()
    return base if _CONTENT_TYPE.fullmatch(base) else DEFAULT_CONTENT_TYPE


class EvidenceStore:
    """Content-addressed evidence files under one directory (``data_dir/evidence``)."""

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.root = root
        self.max_bytes = max_bytes

    def check_size(self, size: int) -> None:
        """Raise EvidenceTooLarge when a file of `size` bytes would be refused."""
        if size > self.max_bytes:
            raise EvidenceTooLarge(size, self.max_bytes)

    def path(self, sha256: str) -> Path:
        """Where the file with this SHA-256 lives (whether or not it exists).

        Raises:
            EvidenceError: `sha256` is not 64 lower-case hex digits.
        """
        if not _SHA256.fullmatch(sha256):
            raise EvidenceError(f"not a SHA-256 hex digest: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put(self, filename: str, content_type: str | None, data: bytes) -> EvidenceRef:
        """Store `data` (once per content) and return its reference.

        Raises:
            EvidenceTooLarge: `data` is over the size limit; nothing is written.
            EvidenceError: the file system refused the write.
        """
        self.check_size(len(data))
        ref = EvidenceRef(
            filename=sanitize_filename(filename),
            content_type=normalize_content_type(content_type),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
        try:
            await asyncio.to_thread(self._write, ref, data)
        except OSError as exc:
            raise EvidenceError(f"cannot store evidence {ref.sha256}: {exc}") from exc
        return ref

    async def read(self, sha256: str) -> bytes:
        """The bytes of a stored file.

        Raises:
            EvidenceNotFound: nothing is stored under this SHA-256.
        """
        path = self.path(sha256)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError as exc:
            raise EvidenceNotFound(f"no evidence file {sha256}") from exc

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _write(self, ref: EvidenceRef, data: bytes) -> None:
        target = self.path(ref.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.is_file() and target.stat().st_size == ref.size):
            _atomic_write(target, data)
        sidecar = target.with_name(target.name + ".json")
        if not sidecar.is_file():
            meta = {
                "filename": ref.filename,
                "content_type": ref.content_type,
                "size": ref.size,
                "sha256": ref.sha256,
                "stored_at": datetime.now(UTC).isoformat(),
            }
            _atomic_write(sidecar, json.dumps(meta, ensure_ascii=False).encode())


def _atomic_write(target: Path, data: bytes) -> None:
    # Temp file in the same directory so the rename is atomic; fsync the file before the rename
    # and the directory after it, so a crash leaves either nothing or the whole file.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
