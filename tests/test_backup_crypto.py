"""Encryption at rest (backup_crypto): round trips and every way a stream can be tampered with."""

from __future__ import annotations

import base64
import gzip
import io
import os
import random
import tracemalloc
import zlib

import pytest

from xdmod_usage.backup_crypto import (
    CHUNK,
    DecryptingReader,
    DecryptionError,
    EncryptingWriter,
    EncryptionKeyError,
    key_id,
    parse_key,
)

KEY = bytes(range(32))


def encrypt(data: bytes, key: bytes = KEY, piece: int = 7919) -> bytes:
    out = io.BytesIO()
    with EncryptingWriter(key, out) as writer:
        for start in range(0, len(data), piece):
            writer.write(data[start : start + piece])
    return out.getvalue()


def decrypt(blob: bytes, key: bytes = KEY) -> bytes:
    return DecryptingReader(key, io.BytesIO(blob)).read()


def chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    header, rest, parts = blob[:14], blob[14:], []
    while rest:
        size = int.from_bytes(rest[:4], "big")
        parts.append(rest[: 4 + size])
        rest = rest[4 + size :]
    return header, parts


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_round_trip(size):
    data = random.Random(size).randbytes(size)  # noqa: S311 - test data, not keys
    assert decrypt(encrypt(data)) == data


def test_gzip_stream_through_encryption_reads_back():
    data = b"INSERT INTO t VALUES (1,'Zo\xc3\xab');\n" * 200_000
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    blob = encrypt(packer.compress(data) + packer.flush(), piece=65536)
    with gzip.GzipFile(fileobj=DecryptingReader(KEY, io.BytesIO(blob))) as plain:
        assert plain.read() == data


def test_tampering_is_detected():
    blob = encrypt(os.urandom(3 * CHUNK + 10))
    header, parts = chunks(blob)
    assert len(parts) == 4
    with pytest.raises(DecryptionError, match="wrong key"):
        decrypt(blob, bytes(32))
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 1
    with pytest.raises(DecryptionError, match="does not authenticate"):
        decrypt(bytes(flipped))
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(header + b"".join(parts[:3]))  # the final chunk dropped at a boundary
    with pytest.raises(DecryptionError, match="after the final chunk"):
        decrypt(blob + b"x")
    with pytest.raises(DecryptionError, match="does not authenticate"):
        decrypt(header + parts[1] + parts[0] + parts[2] + parts[3])
    with pytest.raises(DecryptionError, match="not an encrypted backup"):
        decrypt(b"plain text")


def test_an_aborted_stream_never_decrypts_as_complete():
    out = io.BytesIO()
    with pytest.raises(RuntimeError), EncryptingWriter(KEY, out) as writer:
        writer.write(os.urandom(CHUNK + 100))
        raise RuntimeError("upload failed")
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(out.getvalue())


def test_parse_key_forms_and_errors_without_key_material():
    key = os.urandom(32)
    for text in (base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode().rstrip("="),
                 " " + base64.b64encode(key).decode() + "\n"):  # fmt: skip
        assert parse_key(text) == key
    for bad in (base64.b64encode(os.urandom(31)).decode(), base64.b64encode(os.urandom(33)).decode(), "not base64!"):
        with pytest.raises(EncryptionKeyError) as raised:
            parse_key(bad)
        assert bad not in str(raised.value)
    assert key_id(key) == key_id(bytes(key)) != key_id(os.urandom(32)) and len(key_id(key)) == 16


def test_memory_stays_flat_for_a_64_mib_stream():
    sink = type("Null", (), {"write": lambda self, data: len(data)})()
    block = os.urandom(1 << 16)
    tracemalloc.start()
    try:
        writer = EncryptingWriter(KEY, sink)
        for _ in range(64 * 16):
            writer.write(block)
        writer.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak} bytes"
