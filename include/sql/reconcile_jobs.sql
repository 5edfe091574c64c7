-- Counts the job rows XDMoD holds for one resource and one window: rows of modw.job_tasks whose job
-- ended (end_time_ts, Unix seconds UTC) in [window start, window end), not deleted (is_deleted = 0;
-- XDMoD leaves deleted jobs out of every statistic). The reconciliation compares this number with
-- the rows XDMoD should hold from the staged file (xdmod_usage.xdmod_expected): a difference is
-- lost or double-counted usage. The resource is found by its code in modw.resourcefact (the code
-- of resources.json the shredder got with -r); a semi-join, so a code on two rows counts no job twice.
-- Parameters (MySQLdb %s): resource code, window start, window end (Unix seconds).
-- ${modw} is XDMoD's modw database (xdmod_usage.reconciliation substitutes it; the tests use a scratch name).
-- The end_day_id bound only lets the `deleted` index (is_deleted, end_day_id, start_day_id) find the
-- rows: end_day_id is the end's day in XDMoD's database time zone (YYYY00DDD), always within one
-- day of the UTC day, so the window widened by a day on each side (date arithmetic, no time zone)
-- holds every row; which rows count is decided by end_time_ts alone.
SELECT COUNT(*)
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
