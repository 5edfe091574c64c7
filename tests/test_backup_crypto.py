"""Encryption at rest (backup_crypto): round trips, streaming through gzip, and each way a stream can be broken."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import random
import shutil
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from xdmod_usage.backup_crypto import (
    CHUNK,
    MAGIC,
    DecryptingReader,
    DecryptionError,
    EncryptingWriter,
    EncryptionKeyError,
    is_encrypted,
    key_id,
    parse_key,
)

KEY = bytes(range(32))
HEADER = len(MAGIC) + 7
SEALED = CHUNK + 16  # a full chunk's ciphertext and tag


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - test data, not keys


def encrypt_to(path: Path, data: bytes, key: bytes = KEY, pieces: tuple[int, ...] = (7919,)) -> Path:
    """Write ``data`` in pieces of the given sizes, cycling (odd sizes straddle chunk boundaries)."""
    with path.open("wb") as out, EncryptingWriter(key, out) as writer:
        start, turn = 0, 0
        while start < len(data):
            piece = data[start : start + pieces[turn % len(pieces)]]
            assert writer.write(piece) == len(piece)
            start, turn = start + len(piece), turn + 1
    return path


def decrypt(path: Path, key: bytes = KEY) -> bytes:
    with path.open("rb") as source:
        return DecryptingReader(key, source).read()


def split_chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The header and each chunk (its length field included), as stored."""
    header, rest, parts = blob[:HEADER], blob[HEADER:], []
    while rest:
        size = int.from_bytes(rest[:4], "big")
        parts.append(rest[: 4 + size])
        rest = rest[4 + size :]
    return header, parts


@pytest.fixture
def four_chunks(tmp_path: Path) -> tuple[Path, bytes, list[bytes]]:
    """An encrypted file of 3 full chunks and a short final one."""
    path = encrypt_to(tmp_path / "four.aes", random_bytes(3 * CHUNK + 10, seed=4))
    header, parts = split_chunks(path.read_bytes())
    assert [len(p) for p in parts] == [4 + SEALED] * 3 + [4 + 10 + 16]
    return path, header, parts


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_round_trip(tmp_path, size):
    data = random_bytes(size, seed=size)
    path = encrypt_to(tmp_path / "data.aes", data)
    blob = path.read_bytes()
    assert is_encrypted(blob) and blob.startswith(MAGIC)
    # Every chunk before the final one is full; a final chunk is always there (empty only for empty data).
    assert len(blob) == HEADER + max(1, -(-size // CHUNK)) * (4 + 16) + size
    assert decrypt(path) == data


@pytest.mark.parametrize(
    ("size", "pieces"),
    [
        (CHUNK + 5, (1, 3, 5, 7, 11)),
        (3 * CHUNK + 5, (CHUNK - 1,)),
        (3 * CHUNK + 5, (CHUNK + 1,)),
        (3 * CHUNK + 5, (3 * CHUNK + 5,)),
        (2 * CHUNK, (0, 65537, 0, 999_983)),
    ],
    ids=["tiny", "chunk-1", "chunk+1", "all-at-once", "with-empty-writes"],
)
def test_round_trip_in_odd_pieces(tmp_path, size, pieces):
    data = random_bytes(size, seed=len(pieces))
    path = encrypt_to(tmp_path / "data.aes", data, pieces=pieces)
    with path.open("rb") as source:
        reader, got = DecryptingReader(KEY, source), bytearray()
        for want in (1, 2, 4093, CHUNK, 3, 65536) * 1000:  # reads that straddle chunks, too
            piece = reader.read(want)
            if not piece:
                break
            assert len(piece) == want or len(got) + len(piece) == size  # only the last read is short
            got += piece
    assert bytes(got) == data


def test_write_accepts_any_bytes_like_object():
    out = io.BytesIO()
    with EncryptingWriter(KEY, out) as writer:
        assert writer.write(memoryview(b"abc")) == 3
        assert writer.write(bytearray(b"def")) == 3
        assert writer.write(b"") == 0
    assert DecryptingReader(KEY, io.BytesIO(out.getvalue())).read() == b"abcdef"


def test_same_data_encrypts_differently_each_time(tmp_path):
    data = random_bytes(1000)
    one, two = encrypt_to(tmp_path / "1.aes", data), encrypt_to(tmp_path / "2.aes", data)
    assert one.read_bytes() != two.read_bytes()  # a fresh nonce prefix per file
    assert decrypt(one) == decrypt(two) == data


def test_gzip_through_encryption_reads_back(tmp_path):
    data = b"".join(b"INSERT INTO jobfact VALUES (%d,'Zo\xc3\xab',%d);\n" % (i, i * 7) for i in range(300_000))
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # the gzip container, as backup_streams writes it
    path = tmp_path / "dump.sql.gz.aes"
    with path.open("wb") as out, EncryptingWriter(KEY, out) as writer:
        for start in range(0, len(data), 65521):
            writer.write(packer.compress(data[start : start + 65521]))
        writer.write(packer.flush())
    assert path.stat().st_size > CHUNK  # several chunks
    with path.open("rb") as source, gzip.GzipFile(fileobj=DecryptingReader(KEY, source)) as plain:
        assert plain.read() == data
    with path.open("rb") as source, gzip.GzipFile(fileobj=DecryptingReader(KEY, source)) as plain:
        copy = io.BytesIO()
        shutil.copyfileobj(plain, copy, 12345)
        assert copy.getvalue() == data


def test_wrong_key_is_detected_at_the_first_chunk(four_chunks):
    path, _, _ = four_chunks
    wrong = bytes(32)
    with pytest.raises(DecryptionError, match="chunk 0 does not authenticate: wrong key") as raised:
        decrypt(path, wrong)
    message = str(raised.value)
    for material in (KEY, wrong):
        assert material.hex() not in message and base64.b64encode(material).decode() not in message


@pytest.mark.parametrize("where", ["header", "length", "middle", "last byte"])
def test_one_flipped_byte_is_detected(four_chunks, where):
    path, _, _ = four_chunks
    blob = bytearray(path.read_bytes())
    offset = {"header": HEADER - 1, "length": HEADER + 4 + SEALED + 3, "middle": len(blob) // 2, "last byte": -1}
    blob[offset[where]] ^= 1
    path.write_bytes(blob)
    with pytest.raises(DecryptionError, match=r"does not authenticate|invalid length|truncated|not an encrypted"):
        decrypt(path)


def test_flipping_a_byte_in_the_middle_names_the_chunk(four_chunks):
    path, _, _ = four_chunks
    blob = bytearray(path.read_bytes())
    blob[HEADER + 2 * (4 + SEALED) + 4 + CHUNK // 2] ^= 0x80  # inside chunk 2
    path.write_bytes(blob)
    with path.open("rb") as source:
        reader = DecryptingReader(KEY, source)
        assert len(reader.read(2 * CHUNK)) == 2 * CHUNK  # chunks 0 and 1 are intact
        with pytest.raises(DecryptionError, match="chunk 2 does not authenticate"):
            reader.read(1)


def test_dropping_the_final_chunk_is_truncation(four_chunks):
    path, header, parts = four_chunks
    path.write_bytes(header + b"".join(parts[:3]))  # cut exactly at a chunk boundary
    with pytest.raises(DecryptionError, match="truncated: the stream ends after chunk 2 without its final chunk"):
        decrypt(path)


@pytest.mark.parametrize("cut", [HEADER, HEADER + 2, HEADER + 4 + 100, HEADER - 1, 0])
def test_cut_anywhere_else_is_detected(four_chunks, cut):
    path, _, _ = four_chunks
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DecryptionError, match=r"truncated|not an encrypted"):
        decrypt(path)


@pytest.mark.parametrize("extra", [b"\0", b"garbage after the end", None])
def test_bytes_after_the_final_chunk_are_detected(four_chunks, extra):
    path, _, parts = four_chunks
    path.write_bytes(path.read_bytes() + (extra if extra is not None else parts[-1]))  # None: a replayed final chunk
    with pytest.raises(DecryptionError, match="data after the final chunk"):
        decrypt(path)


def test_swapped_chunks_are_detected(four_chunks):
    path, header, parts = four_chunks
    path.write_bytes(header + parts[1] + parts[0] + parts[2] + parts[3])
    with pytest.raises(DecryptionError, match="chunk 0 does not authenticate"):
        decrypt(path)


def test_a_chunk_from_another_file_is_detected(tmp_path, four_chunks):
    path, header, parts = four_chunks
    other = split_chunks(encrypt_to(tmp_path / "other.aes", random_bytes(3 * CHUNK + 10, seed=4)).read_bytes())[1]
    path.write_bytes(header + parts[0] + other[1] + parts[2] + parts[3])  # same key, same position, other prefix
    with pytest.raises(DecryptionError, match="chunk 1 does not authenticate"):
        decrypt(path)


def test_a_plain_file_is_not_mistaken_for_an_encrypted_one(tmp_path):
    path = tmp_path / "plain.sql.gz"
    path.write_bytes(gzip.compress(b"CREATE TABLE t (x int);\n"))
    assert not is_encrypted(path.read_bytes())
    with pytest.raises(DecryptionError, match="not an encrypted backup file"):
        decrypt(path)


def test_an_aborted_stream_reads_as_truncated(tmp_path):
    path = tmp_path / "aborted.aes"
    with path.open("wb") as out, pytest.raises(RuntimeError, match="upload failed"), EncryptingWriter(KEY, out) as w:
        w.write(random_bytes(CHUNK + 100))
        raise RuntimeError("upload failed")
    assert w.closed
    with pytest.raises(ValueError, match="closed"):
        w.write(b"more")
    with pytest.raises(DecryptionError, match="truncated"):
        decrypt(path)


def test_close_is_idempotent_and_leaves_the_sink_open():
    out = io.BytesIO()
    writer = EncryptingWriter(KEY, out)
    writer.write(b"abc")
    writer.close()
    writer.close()
    assert not out.closed
    assert DecryptingReader(KEY, io.BytesIO(out.getvalue())).read() == b"abc"


def test_parse_key_accepts_the_forms_operators_paste():
    key = bytes([0xFB, 0xFF, 0xBF]) * 10 + b"\xfe\xff"  # encodes with '+' and '/', so the alphabets differ
    standard, urlsafe = base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()
    assert "+" in standard and "/" in standard and "-" in urlsafe and "_" in urlsafe and standard.endswith("=")
    forms = [
        standard,
        urlsafe,
        standard.rstrip("="),
        urlsafe.rstrip("="),
        f"  {standard}\n",
        standard[:20] + "\n" + standard[20:],
    ]
    for text in forms:
        assert parse_key(text) == key, text


@pytest.mark.parametrize(
    "bad",
    [
        base64.b64encode(bytes(range(1, 32))).decode(),  # 31 bytes
        base64.b64encode(bytes(range(1, 34))).decode(),  # 33 bytes
        base64.b64encode(bytes(range(1, 33))).decode().rstrip("=") + "!!",  # junk is rejected, not skipped
        "not base64 at all!",
        "clé-secrète-de-sauvegarde-ÆØÅ",
        "",
        bytes(range(1, 33)).hex(),  # hex, the other common form (and all base64 characters)
    ],
    ids=["31-bytes", "33-bytes", "junk-inside", "not-base64", "non-ascii", "empty", "hex"],
)
def test_parse_key_rejects_bad_keys_without_echoing_them(bad):
    with pytest.raises(EncryptionKeyError, match=r"base64 .* of exactly 32 random bytes") as raised:
        parse_key(bad)
    if bad:
        assert bad not in str(raised.value) and bad.strip("=!") not in str(raised.value)


def test_raw_keys_of_the_wrong_size_are_refused():
    for bad in (bytes(16), bytes(31), bytes(33)):
        with pytest.raises(EncryptionKeyError, match="32 bytes"):
            EncryptingWriter(bad, io.BytesIO())
        with pytest.raises(EncryptionKeyError, match="32 bytes"):
            DecryptingReader(bad, io.BytesIO())


def test_key_id_is_a_stable_public_fingerprint():
    expected = hashlib.sha256(b"xdmod-usage-backup-key\0" + KEY).hexdigest()[:16]
    assert key_id(KEY) == key_id(bytes(range(32))) == expected
    assert len({key_id(os.urandom(32)) for _ in range(100)} | {key_id(KEY)}) == 101


def test_memory_stays_flat_for_a_64_mib_stream(tmp_path):
    block = random_bytes(1 << 16)
    path = tmp_path / "big.aes"
    started = time.perf_counter()
    with path.open("wb") as out:
        tracemalloc.start()
        try:
            writer = EncryptingWriter(KEY, out)
            for _ in range(64 * 16):  # 64 MiB in 64 KiB writes
                writer.write(block)
            writer.close()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    encrypted = time.perf_counter() - started
    assert peak < 8 << 20, f"encryption peak {peak} bytes"
    assert path.stat().st_size == HEADER + 64 * (4 + 16) + (64 << 20)

    with path.open("rb") as source:
        tracemalloc.start()
        try:
            reader, total = DecryptingReader(KEY, source), 0
            while piece := reader.read(1 << 16):
                assert piece == block
                total += len(piece)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert total == 64 << 20
    assert peak < 8 << 20, f"decryption peak {peak} bytes"
    print(f"64 MiB: encrypted in {encrypted:.2f}s, round trip in {time.perf_counter() - started:.2f}s")
