"""Staging store: one directory per resource and UTC day, committed atomically by its manifest.

Layout under the staging root::

    <resource>/<YYYY-MM-DD>/manifest.json       the commit point; names the files below
    <resource>/<YYYY-MM-DD>/v-<hash>/<files>     one immutable version of the day
    _coverage/<resource>/...                     the coverage view's index of the manifests (coverage.py)

Why versions plus a manifest: a day has several files (staged rows, quarantine, raw archive)
and object stores have no multi-file rename. Files of a new version are written where nobody
reads them, then the manifest is replaced in one atomic step (os.replace locally, one PUT on
S3), then older versions are removed. A worker killed at any point leaves either the old day or
the new day visible, never a mix and never a partial file. The version name is a hash of the
content, so a rerun on the same input writes the same bytes to the same names.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from . import coverage

MANIFEST = "manifest.json"
# What happened to a committed version downstream (DayStage.annotate): not part of what was staged, so they
# name the runs that did it. Everything else in a manifest is a function of the input alone.
DOWNSTREAM_NOTES = ("xdmod_ingest", "reconciliation")


def staged_part(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without its downstream notes: identical for identical input, whoever staged it when."""
    return {key: value for key, value in manifest.items() if key not in DOWNSTREAM_NOTES}


_COPY_CHUNK = 1 << 20
_UPLOAD_PART = 8 << 20


class StagingError(RuntimeError):
    """A staging operation could not complete; nothing partial was made visible."""


class SourceShrankError(StagingError):
    """A rerun pulled fewer records than the day's archive holds (the source expired data)."""


@dataclass(frozen=True)
class SpooledFile:
    """A finished local file ready to publish, with the digest computed while it was written."""

    name: str
    local_path: Path
    sha256: str
    size: int

    def entry(self, version: str) -> dict[str, Any]:
        return {"path": f"{version}/{self.name}", "sha256": self.sha256, "bytes": self.size}


class HashingWriter:
    """A write-only binary file that hashes and counts what passes through it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def finish(self, name: str) -> SpooledFile:
        self._handle.close()
        return SpooledFile(name, self.path, self._hash.hexdigest(), self.size)

    def abort(self) -> None:
        self._handle.close()


def gzip_file(source: Path, target: Path, name: str) -> SpooledFile:
    """Compress deterministically (no mtime, no file name in the header) at a fast level.

    Level 1 keeps a million-line day to a couple of seconds; the archive is read rarely.
    """
    writer = HashingWriter(target)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: gzip container, mtime 0
    with open(source, "rb") as handle:
        for chunk in iter(lambda: handle.read(_COPY_CHUNK), b""):
            writer.write(compressor.compress(chunk))
    writer.write(compressor.flush())
    return writer.finish(name)


def gunzip_to(source: IO[bytes], target: IO[bytes]) -> None:
    with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
        shutil.copyfileobj(unzipped, target, _COPY_CHUNK)


class Store:
    """A staging root on a local disk (os calls, real renames) or any fsspec filesystem."""

    def __init__(self, fs: Any, root: str, local: bool) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = local

    @classmethod
    def from_path(cls, path: Any) -> Store:
        """Build from a pathlib.Path, an ObjectStoragePath/UPath, or a URL string."""
        if isinstance(path, Path):
            return cls(None, str(path), True)
        if isinstance(path, str):
            import fsspec  # only when given a bare URL

            fs, root = fsspec.core.url_to_fs(path)
        else:
            fs, root = path.fs, path.path
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        return cls(fs, root, protocol in ("file", "local"))

    def url(self, rel: str) -> str:
        if self.local:
            return f"file://{self._abs(rel)}"
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{self._abs(rel)}"

    def _abs(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def exists(self, rel: str) -> bool:
        return os.path.exists(self._abs(rel)) if self.local else self.fs.exists(self._abs(rel))

    def size(self, rel: str) -> int:
        return os.path.getsize(self._abs(rel)) if self.local else int(self.fs.size(self._abs(rel)))

    def read_bytes(self, rel: str) -> bytes:
        with self.open_read(rel) as handle:
            return handle.read()

    @contextmanager
    def open_read(self, rel: str) -> Iterator[IO[bytes]]:
        if self.local:
            with open(self._abs(rel), "rb") as handle:
                yield handle
        else:
            with self.fs.open(self._abs(rel), "rb") as handle:
                yield handle

    def put_bytes(self, rel: str, data: bytes) -> None:
        """Replace one object atomically."""
        if self.local:
            with self.open_write(rel) as out:
                out.write(data)
        else:
            self.fs.pipe_file(self._abs(rel), data)

    def put_file(self, rel: str, source: Path) -> None:
        """Copy a local file in so that readers see all of it or nothing."""
        with open(source, "rb") as src, self.open_write(rel) as out:
            shutil.copyfileobj(src, out, _COPY_CHUNK)
        if not self.local:
            size = self.size(rel)
            if size != source.stat().st_size:
                raise StagingError(f"{self.url(rel)}: stored size {size} != {source.stat().st_size}")

    @contextmanager
    def open_write(self, rel: str, mode: int = 0o644) -> Iterator[IO[bytes]]:
        """Stream one object in; readers see all of it or nothing, whatever happens in the block.

        Local: a hidden temp file in the target directory (XDMoD's shredder skips dot files),
        fsynced, then renamed over the target (atomic within one filesystem). Object store: a
        multipart upload in 8 MiB parts (memory stays flat), aborted on error, since closing
        it would complete the object with partial data.
        """
        target = self._abs(rel)
        if not self.local:
            handle = self.fs.open(target, "wb", block_size=_UPLOAD_PART)
            try:
                yield handle
            except BaseException:
                discard = getattr(handle, "discard", None)
                if discard is not None:
                    discard()
                raise
            handle.close()
            return
        directory = os.path.dirname(target)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def list_names(self, rel: str) -> list[str]:
        path = self._abs(rel)
        if self.local:
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        if not self.fs.exists(path):
            return []
        return sorted(PurePosixPath(p).name for p in self.fs.ls(path, detail=False))

    def remove_stale_temps(self, rel: str) -> None:
        """Drop hidden temp files a killed writer left in a local directory (object stores leave none)."""
        if self.local:
            for name in self.list_names(rel):
                if name.startswith(".") and name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{self._abs(rel)}/{name}")

    def remove_tree(self, rel: str) -> None:
        """Remove a file or a directory tree."""
        path = self._abs(rel)
        if not self.local:
            self.fs.rm(path, recursive=True)
        elif os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


class DayStage:
    """One resource-day in the store: read its manifest, publish a new version of it."""

    def __init__(self, store: Store, resource: str, day: str) -> None:
        self.store = store
        self.resource, self.day = resource, day
        self.prefix = f"{resource}/{day}"

    @property
    def manifest_url(self) -> str:
        return self.store.url(f"{self.prefix}/{MANIFEST}")

    def read_manifest(self) -> dict[str, Any] | None:
        rel = f"{self.prefix}/{MANIFEST}"
        if not self.store.exists(rel):
            return None
        return json.loads(self.store.read_bytes(rel))

    def url_of(self, entry: dict[str, Any]) -> str:
        return self.store.url(f"{self.prefix}/{entry['path']}")

    @contextmanager
    def open_entry(self, entry: dict[str, Any]) -> Iterator[IO[bytes]]:
        with self.store.open_read(f"{self.prefix}/{entry['path']}") as handle:
            yield handle

    def replay_raw(self, manifest: dict[str, Any] | None, name: str, out: IO[bytes]) -> None:
        """Unzip the archived raw source data ``name`` of the committed day into ``out``."""
        if manifest is None or name not in manifest.get("files", {}):
            raise StagingError(f"no archive to replay at {self.manifest_url}: run from the live source first")
        with self.open_entry(manifest["files"][name]) as archived:
            gunzip_to(archived, out)

    def annotate(self, version: str, key: str, value: Any) -> dict[str, Any]:
        """Record what happened to a committed version downstream (ingested, reconciled: DOWNSTREAM_NOTES) in
        its manifest, atomically. Refuses when the day was restaged since: the note would describe other files."""
        if key not in DOWNSTREAM_NOTES:
            raise ValueError(f"{key!r} is not a downstream note ({', '.join(DOWNSTREAM_NOTES)})")
        manifest = self.read_manifest()
        if manifest is None or manifest.get("version") != version:
            found = None if manifest is None else manifest.get("version")
            raise StagingError(f"{self.manifest_url}: version {version} is no longer staged (now {found}); "
                               "the day was restaged since: rerun its XDMoD steps")  # fmt: skip
        manifest[key] = value
        self._write_manifest(manifest)
        return manifest

    def _write_manifest(self, body: dict[str, Any]) -> None:
        encoded = (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        self.store.put_bytes(f"{self.prefix}/{MANIFEST}", encoded)
        if not self.resource.startswith("_"):  # site-wide areas (_hierarchy) are no resource's days
            coverage.record(self.store, self.resource, self.day, body)

    def publish(self, files: list[SpooledFile], manifest: dict[str, Any]) -> dict[str, Any]:
        """Write a new version of the day and commit it; returns the manifest as stored."""
        digest = hashlib.sha256()
        for spooled in sorted(files, key=lambda f: f.name):
            digest.update(f"{spooled.name}\0{spooled.sha256}\n".encode())
        version = f"v-{digest.hexdigest()[:16]}"
        for spooled in files:
            self.store.put_file(f"{self.prefix}/{version}/{spooled.name}", spooled.local_path)
        body = {
            **manifest,
            "version": version,
            "files": {f.name: f.entry(version) for f in sorted(files, key=lambda f: f.name)},
        }
        self._write_manifest(body)
        for name in self.store.list_names(self.prefix):
            if name.startswith("v-") and name != version:
                self.store.remove_tree(f"{self.prefix}/{name}")
        self.store.remove_stale_temps(f"{self.prefix}/{version}")
        return body
