-- Timestamp for `xdmod-ingestor --aggregate=<realm> --last-modified-start-date TS`, taken on XDMoD's
-- database server before the shred: TS is compared with last_modified columns that server writes,
-- so neither the Airflow worker's clock nor its time zone may be used.
SELECT DATE_FORMAT(NOW(), '%Y-%m-%d %H:%i:%s')
