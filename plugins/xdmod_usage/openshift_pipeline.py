"""Stage one UTC day of OpenShift usage: query Prometheus (or replay the archive), rows, check, commit.

Runs without Airflow: the DAG task passes a ready PrometheusApi (or None to replay); tests and the
benchmark call it directly. The raw archive is the JSON of every query and answer, so a day can
be reprocessed after Prometheus has expired it (OpenShift keeps about two weeks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from .config import OpenShiftSource
from .openshift_queries import DayQueries
from .openshift_rows import load_mapping, sacct_lines
from .progress import EVERY
from .slurm_pipeline import SlurmDay, StageResult, stage_slurm_day
from .staging import StagingError, Store
from .window import UsageWindow


class PrometheusHolesError(StagingError):
    """Prometheus has holes in the day's data and the policy is to fail (the day was staged)."""


def stage_openshift_day(
    store: Store,
    resource: str,
    xdmod_resource: str,
    source: OpenShiftSource,
    window: UsageWindow,
    api: Any | None,
    *,
    source_info: dict[str, Any] | None = None,
    allow_fewer_records: bool = False,
    max_quarantine_share: float = 0.01,
    spool_dir: str | None = None,
    progress_every: float = EVERY,
) -> StageResult:
    """Stage the day; ``api`` None replays the archived answers with today's policy for that day.

    Progress (heartbeats while querying and building rows, rows checked) every ``progress_every`` s.
    """
    policy = source.policy_for(window.day)
    day = SlurmDay(resource, xdmod_resource, xdmod_resource, window, kind="openshift")
    info: dict[str, Any] = {"type": "prometheus", **(source_info or {}), "policy": policy.model_dump(mode="json")}

    pull = None
    if api is not None:

        def pull(out: IO[bytes]) -> None:
            queries = DayQueries(source, policy, window, api.major_version())
            archive = queries.fetch(api)
            out.write(json.dumps(archive, sort_keys=True, separators=(",", ":")).encode())
            info["queries"] = api.stats.as_dict()

    def convert(raw: Path, lines_path: Path) -> dict[str, Any]:
        archive = json.loads(raw.read_bytes())
        lines, counts = sacct_lines(
            archive,
            xdmod_resource=xdmod_resource,
            policy=policy,
            product_label=source.gpu_product_label,
            mapping=load_mapping(policy.mapping_file),
            max_hole_seconds=source.max_hole.total_seconds(),
        )
        with open(lines_path, "wb") as out:
            for line in lines:
                out.write(line + b"\n")
        return counts.as_dict()

    result = stage_slurm_day(
        store,
        day,
        pull,
        info,
        allow_fewer_records=allow_fewer_records,
        max_quarantine_share=max_quarantine_share,
        spool_dir=spool_dir,
        convert=convert,
        progress_every=progress_every,
    )
    holes = result.manifest["source_counts"]["holes"]
    if holes and source.on_hole == "fail":
        raise PrometheusHolesError(
            f"{resource} {window.day}: Prometheus has no request samples for "
            + ", ".join(f"{h['start']}..{h['end']} ({h['minutes']} min)" for h in holes)
            + f" (longer than max_hole {source.max_hole}). The day was staged from what exists; "
            "the XDMoD steps did not run. Rerun when the data is back, or set on_hole: warn."
        )
    return result
