-- Counts the job rows XDMoD holds for one resource per UTC day over a range (a reload or backfill of
-- many days is checked in one query): as reconcile_jobs.sql (modw.job_tasks, is_deleted = 0, the
-- resource by its code), grouped by the UTC day of end_time_ts. FLOOR(end_time_ts / 86400) is the
-- number of days since 1970-01-01 UTC, independent of the server's time zone (DATE(FROM_UNIXTIME())
-- or end_day_id would follow the server's zone). Days without rows are absent; the caller fills 0.
-- Parameters (MySQLdb %s): resource code, range start, range end (Unix seconds; whole UTC days).
-- ${modw}: see reconcile_jobs.sql, also for the end_day_id bound that only serves the index.
SELECT FLOOR(jt.end_time_ts / 86400) AS utc_day, COUNT(*) AS held
FROM (SELECT code, start_ts, end_ts,
             DATE('1970-01-01') + INTERVAL FLOOR(start_ts / 86400) - 1 DAY AS first_day,
             DATE('1970-01-01') + INTERVAL FLOOR((end_ts - 1) / 86400) + 1 DAY AS last_day
      FROM (SELECT %s AS code, %s AS start_ts, %s AS end_ts) AS given) AS p
JOIN ${modw}.job_tasks AS jt
  ON jt.is_deleted = 0
 AND jt.end_day_id BETWEEN YEAR(p.first_day) * 100000 + DAYOFYEAR(p.first_day)
                       AND YEAR(p.last_day) * 100000 + DAYOFYEAR(p.last_day)
 AND jt.end_time_ts >= p.start_ts
 AND jt.end_time_ts < p.end_ts
WHERE jt.resource_id IN (SELECT rf.id FROM ${modw}.resourcefact AS rf WHERE rf.code = p.code)
GROUP BY utc_day
ORDER BY utc_day
