-- Counts the cloud events XDMoD holds for one resource and one window: rows of modw_cloud.event
-- whose event_time_ts (Unix seconds UTC, to the microsecond) is in [window start, window end). One
-- row per XDMoD event key (resource, instance, time, event type, host): what the reconciliation
-- compares with the events XDMoD should hold from the staged events file (xdmod_usage.xdmod_expected);
-- a difference is lost or double-counted usage. The resource is found by its code in
-- modw.resourcefact (the -r code of resources.json); a semi-join, so no event counts twice.
-- Parameters (MySQLdb %s): resource code, window start, window end (Unix seconds).
-- ${modw} and ${modw_cloud} are XDMoD's databases (xdmod_usage.reconciliation substitutes them).
-- The primary key starts with resource_id: the scan reads that resource's events only.
SELECT COUNT(*)
FROM (SELECT %s AS code, %s AS start_ts, %s AS end_ts) AS p
JOIN ${modw_cloud}.event AS ev
  ON ev.event_time_ts >= p.start_ts
 AND ev.event_time_ts < p.end_ts
WHERE ev.resource_id IN (SELECT rf.id FROM ${modw}.resourcefact AS rf WHERE rf.code = p.code)
