"""Staging on S3 (a real S3 endpoint on loopback) through ObjectStoragePath and an Airflow connection."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xdmod_usage.slurm_pipeline import SlurmDay, stage_slurm_day
from xdmod_usage.staging import SourceShrankError, Store
from xdmod_usage.synthetic import synthetic_sacct_lines
from xdmod_usage.window import UsageWindow

WINDOW = UsageWindow.for_day(dt.date(2026, 11, 20))
DAY = SlurmDay("hpc1", "hpc1", "synth", WINDOW)
CONN_ID = "staging_s3"


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch, request) -> str:
    """A fresh bucket, and the Airflow connection (from the environment) that reaches it."""
    import boto3

    bucket = f"xdmod-staging-{request.node.name.lower().replace('_', '-')[:30]}-{os.getpid()}"
    conn = {"conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)  # fmt: skip
    return bucket


def s3_store(bucket: str) -> Store:
    from airflow.sdk import ObjectStoragePath

    return Store.from_path(ObjectStoragePath(f"s3://{bucket}/staging", conn_id=CONN_ID))


def listing(store: Store) -> dict[str, bytes]:
    keys = store.fs.find(store.root)  # the coverage index records write times, so it is left out
    return {key: store.fs.cat_file(key) for key in keys if "/_coverage/" not in key}


def test_stage_on_s3_is_deterministic_and_consistent(s3_bucket, tmp_path):
    lines = b"".join(synthetic_sacct_lines(WINDOW, 5000))
    store = s3_store(s3_bucket)
    first = stage_slurm_day(store, DAY, lambda out: out.write(lines), {"type": "t"}, max_quarantine_share=1.0)
    assert first.manifest_url == f"s3://{s3_bucket}/staging/hpc1/2026-11-20/manifest.json"
    objects = listing(store)
    manifest = json.loads(objects[f"{s3_bucket}/staging/hpc1/2026-11-20/manifest.json"])
    for entry in manifest["files"].values():
        body = objects[f"{s3_bucket}/staging/hpc1/2026-11-20/{entry['path']}"]
        assert hashlib.sha256(body).hexdigest() == entry["sha256"] and len(body) == entry["bytes"]

    # Same day on local disk gives the very same bytes: the store does not change the content.
    local = stage_slurm_day(Store.from_path(tmp_path), DAY, lambda out: out.write(lines), {"type": "t"},
                            max_quarantine_share=1.0)  # fmt: skip
    assert local.manifest == manifest

    second = stage_slurm_day(store, DAY, lambda out: out.write(lines), {"type": "t"}, max_quarantine_share=1.0)
    assert second.manifest == first.manifest and listing(store) == objects

    with pytest.raises(SourceShrankError):
        stage_slurm_day(store, DAY, lambda out: out.write(lines[:1000]), {"type": "t"}, max_quarantine_share=1.0)
    assert listing(store) == objects
    replay = stage_slurm_day(store, DAY, None, {"type": "t"}, max_quarantine_share=1.0)
    assert replay.manifest["files"] == manifest["files"]


KILL_CHILD = """
import sys, datetime as dt
sys.path.insert(0, sys.argv[3])
from airflow.sdk import ObjectStoragePath
from xdmod_usage.staging import Store
from pathlib import Path
store = Store.from_path(ObjectStoragePath(sys.argv[1], conn_id=sys.argv[4]))
print("uploading", flush=True)
store.put_file("big/raw.bin", Path(sys.argv[2]))
"""


def test_a_killed_upload_never_leaves_a_partial_object(s3_bucket, tmp_path):
    """SIGKILL during a multipart upload (120 MB, 50 MB parts): the object is absent, or whole if the
    upload completed just before the signal landed; never partial."""
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(120 * 1024 * 1024))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, f"s3://{s3_bucket}/staging", str(big),
         str(Path(__file__).parent.parent / "plugins"), CONN_ID],
        stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    for line in proc.stdout:  # connection log lines come first
        if line.strip() == "uploading":
            break
    time.sleep(0.5)
    assert proc.poll() is None, "upload finished before the kill; make the file bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = s3_store(s3_bucket)
    store.fs.invalidate_cache()
    if store.exists("big/raw.bin"):
        assert store.size("big/raw.bin") == big.stat().st_size
        assert hashlib.sha256(store.read_bytes("big/raw.bin")).digest() == hashlib.sha256(big.read_bytes()).digest()
