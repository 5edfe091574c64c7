-- Counts the cloud events XDMoD holds for one resource per UTC day over a range (a reload of many
-- days is checked in one query): as reconcile_cloud.sql (modw_cloud.event, the resource by its code),
-- grouped by the UTC day of event_time_ts. FLOOR(event_time_ts / 86400) is the number of days since
-- 1970-01-01 UTC, independent of the server's time zone. Days without events are absent; the
-- caller fills 0.
-- Parameters (MySQLdb %s): resource code, range start, range end (Unix seconds; whole UTC days).
-- ${modw} and ${modw_cloud}: see reconcile_cloud.sql.
SELECT FLOOR(ev.event_time_ts / 86400) AS utc_day, COUNT(*) AS held
FROM (SELECT %s AS code, %s AS start_ts, %s AS end_ts) AS p
JOIN ${modw_cloud}.event AS ev
  ON ev.event_time_ts >= p.start_ts
 AND ev.event_time_ts < p.end_ts
WHERE ev.resource_id IN (SELECT rf.id FROM ${modw}.resourcefact AS rf WHERE rf.code = p.code)
GROUP BY utc_day
ORDER BY utc_day
