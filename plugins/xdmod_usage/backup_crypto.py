"""Encryption at rest for backup objects: AES-256-GCM over 1 MiB chunks, streamed.

Why chunks: a dump can be far larger than memory, and GCM over one huge message would need it
whole before the tag is known. This is the STREAM construction (Hoang, Reyhanitabar, Rogaway,
Vizár 2015): each chunk is sealed with a nonce made of a random per-file prefix, the chunk's
counter and a "last chunk" flag, so dropping, reordering or truncating chunks is detected, as is
any flipped byte or a wrong key.

File format::

    MAGIC (b"XUENC1\\n") | prefix (7 random bytes) |
    { length (4 bytes, big endian) | ciphertext+tag of <= CHUNK bytes of plaintext } ...

nonce = prefix | counter (4 bytes, big endian, from 0) | last (1 byte: 1 for the final chunk);
associated data = MAGIC | prefix. The final chunk is always written, possibly empty.
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
_PREFIX = 7
_TAG = 16
_LENGTH = struct.Struct(">I")


class EncryptionKeyError(ValueError):
    """The configured key is not usable; the message never contains key material."""


class DecryptionError(RuntimeError):
    """Not an encrypted backup, the wrong key, or tampered/truncated data."""


def parse_key(text: str) -> bytes:
    """The key as operators store it: base64 (standard or URL-safe, padding optional) of 32 bytes."""
    cleaned = "".join(text.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            key = decode(padded.encode("ascii"), validate=True) if decode is base64.b64decode else decode(padded)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(key) == 32:
            return key
    raise EncryptionKeyError("the backup key must be base64 of exactly 32 random bytes (e.g. from os.urandom(32))")


def key_id(key: bytes) -> str:
    """A public fingerprint recorded in manifests, so a restore can tell which key it needs."""
    return hashlib.sha256(b"xdmod-usage-backup-key\0" + key).hexdigest()[:16]


def is_encrypted(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 1 << 32:
        raise ValueError("stream too long for one file (4 PiB)")
    return prefix + struct.pack(">I", counter) + (b"\x01" if last else b"\x00")


class EncryptingWriter:
    """Write-only sink: buffers at most one chunk, writes sealed chunks to ``out``.

    ``close()`` writes the final chunk (``out`` stays open). Leaving a ``with`` block by an
    exception writes no final chunk, so an aborted stream never decrypts as complete.
    """

    def __init__(self, key: bytes, out: IO[bytes]) -> None:
        self._aead = AESGCM(key)
        self._out = out
        self._prefix = os.urandom(_PREFIX)
        self._header = MAGIC + self._prefix
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._header)

    def _seal(self, data: bytes, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, last), data, self._header)
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._counter += 1

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write to a closed EncryptingWriter")
        self._buffer += data
        # Keep the last (possibly full) chunk back: only close() knows which chunk is final.
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def __enter__(self) -> EncryptingWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True


class DecryptingReader:
    """Read-only source over an encrypted stream; raises DecryptionError on any tampering."""

    def __init__(self, key: bytes, source: IO[bytes]) -> None:
        self._aead = AESGCM(key)
        self._source = source
        header = self._read_exact(len(MAGIC) + _PREFIX)
        if not is_encrypted(header) or len(header) != len(MAGIC) + _PREFIX:
            raise DecryptionError("not an encrypted backup file (no XUENC1 header)")
        self._header = header
        self._prefix = header[len(MAGIC) :]
        self._counter = 0
        self._plain = b""
        self._done = False

    def _read_exact(self, size: int) -> bytes:
        parts, left = [], size
        while left:
            data = self._source.read(left)
            if not data:
                break
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _next_chunk(self) -> None:
        length = self._read_exact(_LENGTH.size)
        if len(length) != _LENGTH.size:
            raise DecryptionError(f"truncated: the stream ends before its final chunk (after chunk {self._counter})")
        (size,) = _LENGTH.unpack(length)
        if size < _TAG or size > CHUNK + _TAG:
            raise DecryptionError(f"chunk {self._counter}: invalid length {size}")
        sealed = self._read_exact(size)
        if len(sealed) != size:
            raise DecryptionError(f"truncated inside chunk {self._counter}")
        for last in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed, self._header)
            except InvalidTag:
                continue
            self._counter += 1
            self._plain = plain
            if last:
                self._done = True
                if self._source.read(1):
                    raise DecryptionError("data after the final chunk")
            return
        raise DecryptionError(f"chunk {self._counter} does not authenticate: wrong key, or the data was altered")

    def read(self, n: int = -1) -> bytes:
        out = []
        wanted = n if n is not None and n >= 0 else None
        while wanted is None or wanted > 0:
            if not self._plain:
                if self._done:
                    break
                self._next_chunk()
                continue
            take = self._plain if wanted is None else self._plain[:wanted]
            self._plain = self._plain[len(take) :]
            out.append(take)
            if wanted is not None:
                wanted -= len(take)
        return b"".join(out)

    def readable(self) -> bool:
        return True
