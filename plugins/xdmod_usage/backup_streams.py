"""Backup objects as streams: compress, optionally encrypt, hash and store in one pass, and back.

Why one pass: a dump of XDMoD's databases can be far larger than the worker's disk or memory.
Bytes flow from the producer (mysqldump, tar) through zlib and AES-GCM straight into the store
(a local rename or an S3 multipart upload), so memory stays at a few chunks whatever the size,
and nothing is visible under the object's name until it is complete.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any

from .staging import Store

READ_CHUNK = 1 << 20


class _Hashing:
    """Pass-through that hashes and counts the bytes as stored."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


class ObjectSink:
    """One stored object written as a gzip stream (encrypted when a key is given).

    ``close()`` returns its manifest entry; ``abort()`` leaves nothing behind.
    """

    def __init__(self, store: Store, rel: str, level: int, key: bytes | None) -> None:
        self.rel = rel
        self._stack = ExitStack()
        raw = self._stack.enter_context(store.open_write(rel, mode=0o600))
        self._hashing = _Hashing(raw)
        self._encrypting: Any = None
        target: Any = self._hashing
        if key is not None:
            from .backup_crypto import EncryptingWriter

            self._encrypting = target = EncryptingWriter(key, self._hashing)
        self._target = target
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 31)  # gzip container, mtime 0
        self.plain_bytes = 0

    def write(self, data: bytes) -> int:
        self.plain_bytes += len(data)
        packed = self._zlib.compress(data)
        if packed:
            self._target.write(packed)
        return len(data)

    def close(self) -> dict[str, Any]:
        self._target.write(self._zlib.flush())
        if self._encrypting is not None:
            self._encrypting.close()
        self._stack.close()
        return {"path": self.rel, "sha256": self._hashing.sha256.hexdigest(), "bytes": self._hashing.size,
                "plain_bytes": self.plain_bytes}  # fmt: skip

    def abort(self, exc: BaseException) -> None:
        self._stack.__exit__(type(exc), exc, exc.__traceback__)


class HashMismatchError(RuntimeError):
    """A stored object's bytes are not the ones recorded when it was written."""


class _HashingReader:
    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def verify(self, store: Store, entry: dict[str, Any]) -> None:
        """Hash what is left unread, then compare every byte with the manifest entry."""
        while self.read(READ_CHUNK):
            pass
        if self.sha256.hexdigest() != entry["sha256"] or self.size != entry["bytes"]:
            raise HashMismatchError(
                f"{store.url(entry['path'])}: sha256 {self.sha256.hexdigest()} ({self.size} bytes), "
                f"manifest says {entry['sha256']} ({entry['bytes']} bytes)"
            )


@contextmanager
def open_object(store: Store, entry: dict[str, Any], key: bytes | None) -> Iterator[IO[bytes]]:
    """The plain bytes of a stored object; its sha256 and size are checked when the block ends.

    The check covers every stored byte (the rest is drained if the reader stopped early), so
    a restore re-hashes the object in the same pass that reads it.
    """
    with store.open_read(entry["path"]) as stored:
        hashing = _HashingReader(stored)
        source: Any = hashing
        if key is not None:
            from .backup_crypto import DecryptingReader

            source = DecryptingReader(key, hashing)
        with gzip.GzipFile(fileobj=source, mode="rb") as plain:
            yield plain  # type: ignore[misc]
            while plain.read(READ_CHUNK):
                pass
        hashing.verify(store, entry)


def rehash(store: Store, entry: dict[str, Any]) -> None:
    """Re-read a stored object and compare with its manifest entry (no decryption needed)."""
    with store.open_read(entry["path"]) as stored:
        _HashingReader(stored).verify(store, entry)
