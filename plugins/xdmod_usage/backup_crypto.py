"""Encryption at rest for backup objects: AES-256-GCM over 1 MiB chunks, streamed.

Why chunks: a dump can be far larger than memory, and GCM over one huge message would need it
whole before the tag could be checked. This is the STREAM construction (Hoang, Reyhanitabar,
Rogaway, Vizár 2015): each chunk is sealed under a nonce made of a random per-file prefix, the
chunk's counter and a "last chunk" flag, so a wrong key, a flipped byte, reordered chunks, a
stream cut at a chunk boundary and bytes appended after the end are all detected.

File format::

    header = MAGIC (b"XUENC1\\n", 7 bytes) | prefix (7 random bytes)
    chunk  = length (4 bytes, big endian) | AES-GCM ciphertext + 16-byte tag of <= CHUNK bytes
    file   = header | chunk* | final chunk

    nonce           = prefix | counter (4 bytes, big endian, from 0) | last (1 byte: 1 final, else 0)
    associated data = header

The final chunk is always written (its plaintext may be empty) and nothing may follow it. Memory
stays at about one chunk on either side, whatever the size of the stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"XUENC1\n"
CHUNK = 1 << 20
_KEY = 32
_PREFIX = 7
_TAG = 16
_HEADER = len(MAGIC) + _PREFIX
_LENGTH = struct.Struct(">I")
_MAX_CHUNKS = 1 << 32  # the counter's range: 4 PiB per file


class EncryptionKeyError(ValueError):
    """The configured key is not usable; the message never contains key material."""


class DecryptionError(RuntimeError):
    """Not an encrypted backup, the wrong key, or tampered/truncated data (says which chunk, never the key)."""


def parse_key(text: str) -> bytes:
    """The key as operators store it: base64 (standard or URL-safe, padding optional) of exactly 32 bytes.

    Whitespace anywhere is ignored (keys get pasted with newlines); anything else outside the
    base64 alphabets is rejected rather than skipped, so a mangled key fails here and not later.
    """
    cleaned = "".join(text.split()).rstrip("=")
    standard = cleaned.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        key = b""
    if len(key) != _KEY:
        raise EncryptionKeyError(
            "the backup key must be base64 (standard or URL-safe) of exactly 32 random bytes, "
            'e.g. python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
        )
    return key


def key_id(key: bytes) -> str:
    """A short public fingerprint, recorded in manifests so a restore can tell which key it needs."""
    return hashlib.sha256(b"xdmod-usage-backup-key\0" + key).hexdigest()[:16]


def is_encrypted(head: bytes) -> bool:
    """Whether a stored object's first bytes are this format's header (so restore knows to ask for a key)."""
    return head.startswith(MAGIC)


def _aead(key: bytes) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != _KEY:
        raise EncryptionKeyError("the backup key must be exactly 32 bytes (AES-256); use parse_key()")
    return AESGCM(bytes(key))


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """Write-only sink that seals what is written to it into ``out``, one chunk at a time.

    At most one chunk of plaintext is buffered. A full chunk is held back until more data
    arrives, because only ``close()`` knows which chunk is the final one. ``close()`` writes
    the final chunk and leaves ``out`` open (the caller owns it). Leaving a ``with`` block by an
    exception writes no final chunk, so an aborted stream can never decrypt as complete.
    """

    def __init__(self, key: bytes, out: IO[bytes]) -> None:
        self._aead = _aead(key)
        self._out = out
        self._prefix = os.urandom(_PREFIX)
        self._header = MAGIC + self._prefix
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._header)

    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        return True

    def _seal(self, plain: bytes | bytearray, last: bool) -> None:
        if self._counter >= _MAX_CHUNKS:
            raise ValueError("stream too long for one encrypted file (4 PiB)")
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), plain, self._header)
        self._out.write(_LENGTH.pack(len(sealed)))
        self._out.write(sealed)
        self._counter += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer ``data``, sealing every chunk known not to be the last; returns ``len(data)``."""
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            if len(self._buffer) == CHUNK:  # more data follows, so the held chunk is not the last
                self._seal(self._buffer, last=False)
                self._buffer.clear()
            room = CHUNK - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
        return size

    def flush(self) -> None:
        """Flush ``out``; buffered plaintext stays buffered (sealing early would need a short chunk)."""
        if hasattr(self._out, "flush"):
            self._out.flush()

    def close(self) -> None:
        """Seal the final chunk (possibly empty). Idempotent; ``out`` is not closed."""
        if not self._closed:
            self._closed = True
            self._seal(self._buffer, last=True)
            self._buffer = bytearray()

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:  # no final chunk: the partial stream must read as truncated
            self._closed = True
            self._buffer = bytearray()


class DecryptingReader:
    """Read-only source of the plaintext of an encrypted stream, one chunk in memory at a time.

    The header is checked on construction. Every chunk is authenticated before any of its bytes
    are returned; the end of the stream is only reported after the final chunk authenticated and
    nothing followed it. Any failure raises DecryptionError. Works as ``gzip.GzipFile(fileobj=...)``
    and with ``shutil.copyfileobj``.
    """

    def __init__(self, key: bytes, source: IO[bytes]) -> None:
        self._aead = _aead(key)
        self._source = source
        header = self._read_exact(_HEADER)
        if len(header) != _HEADER or not is_encrypted(header):
            raise DecryptionError("not an encrypted backup file (no XUENC1 header)")
        self._header = header
        self._prefix = header[len(MAGIC) :]
        self._counter = 0
        self._plain = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def _read_exact(self, size: int) -> bytes:
        first = self._source.read(size)
        if len(first) == size or not first:
            return first
        parts, left = [first], size - len(first)
        while left:
            data = self._source.read(left)
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _next_chunk(self) -> None:
        index = self._counter
        length = self._read_exact(_LENGTH.size)
        if not length:
            raise DecryptionError(f"truncated: the stream ends after chunk {index - 1} without its final chunk")
        if len(length) != _LENGTH.size:
            raise DecryptionError(f"truncated inside the length of chunk {index}")
        (size,) = _LENGTH.unpack(length)
        if not _TAG <= size <= CHUNK + _TAG:
            raise DecryptionError(f"chunk {index}: invalid length {size} (corrupt or not this format)")
        sealed = self._read_exact(size)
        if len(sealed) != size:
            raise DecryptionError(f"truncated inside chunk {index} ({len(sealed)} of {size} bytes)")
        if index >= _MAX_CHUNKS:
            raise DecryptionError(f"chunk {index}: more chunks than the format allows")
        # Whether this chunk is the final one is part of what the tag authenticates.
        for last in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, index, last), sealed, self._header)
            except InvalidTag:
                continue
            if last and self._source.read(1):
                raise DecryptionError(f"data after the final chunk (chunk {index})")
            self._counter += 1
            self._done = last
            self._plain = memoryview(plain)
            return
        raise DecryptionError(f"chunk {index} does not authenticate: wrong key, or the data was altered or reordered")

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes of plaintext (all that is left if ``n`` is negative or None); b"" at the end."""
        wanted = None if n is None or n < 0 else n
        parts: list[bytes] = []
        while wanted is None or wanted > 0:
            if not self._plain:
                if self._done:
                    break
                self._next_chunk()
                continue
            take = self._plain if wanted is None else self._plain[:wanted]
            self._plain = self._plain[len(take) :]
            parts.append(take.tobytes())
            if wanted is not None:
                wanted -= len(take)
        return parts[0] if len(parts) == 1 else b"".join(parts)
