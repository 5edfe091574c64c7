-- The three XDMoD tables the reconciliation reads, as XDMoD's ETL table definitions declare them
-- (ubccr/xdmod configuration/etl/etl_tables.d/jobs/xdw/resource-fact.json, jobs/xdw/job-tasks.json,
-- cloud_common/event.json): the same columns, types, nullability, defaults and keys. They stand in
-- for XDMoD's own tables so the reconciliation queries run on a real MariaDB in the tests and the
-- demo; on an XDMoD installation XDMoD creates the real ones (do not apply this file there).
-- ${modw} and ${modw_cloud} are the databases (modw and modw_cloud on XDMoD's server; the tests use
-- scratch names); xdmod_usage.reconciliation.apply_schema_subset substitutes them. Idempotent.
-- resourcefact.start_date defaults to a zero date: the session needs a sql_mode without
-- NO_ZERO_DATE (XDMoD runs with sql_mode = '').

CREATE DATABASE IF NOT EXISTS `${modw}`;
CREATE DATABASE IF NOT EXISTS `${modw_cloud}`;

-- modw.resourcefact (jobs/xdw/resource-fact.json): one row per resource; `code` is the resource
-- code of resources.json (`xdmod-shredder -r CODE`), what the reconciliation selects by.
CREATE TABLE IF NOT EXISTS `${modw}`.`resourcefact` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `resourcetype_id` int(11) NULL DEFAULT 0,
  `organization_id` int(11) NOT NULL DEFAULT 1,
  `name` varchar(200) NOT NULL DEFAULT '',
  `code` varchar(64) NOT NULL,
  `description` varchar(1000) NULL,
  `start_date` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `start_date_ts` int(14) NOT NULL DEFAULT 0,
  `end_date` datetime NULL,
  `end_date_ts` int(14) NULL,
  `shared_jobs` int(1) NOT NULL DEFAULT 0,
  `timezone` varchar(30) NOT NULL DEFAULT 'UTC',
  `resource_allocation_type_id` int(10) NOT NULL DEFAULT -1,
  `resource_origin_id` int(11) NOT NULL DEFAULT 0,
  PRIMARY KEY (`id`),
  KEY `aggregation_index` (`resourcetype_id`, `id`),
  KEY `fk_Resource_Organization1_idx` (`organization_id`),
  KEY `fk_resource_resourcetype1_idx` (`resourcetype_id`),
  UNIQUE KEY `UNIQ` (`organization_id`, `name`, `start_date`)
) ENGINE=InnoDB COMMENT='Information about resources.';

-- modw.job_tasks (jobs/xdw/job-tasks.json): one row per job or job-array task. end_time_ts is Unix
-- seconds UTC; end_day_id is the end's day (YYYY00DDD) in XDMoD's database time zone, not UTC.
CREATE TABLE IF NOT EXISTS `${modw}`.`job_tasks` (
  `job_record_id` bigint(20) unsigned NOT NULL,
  `job_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `job_id_origin_id` bigint(20) unsigned NOT NULL,
  `creation_time` datetime NOT NULL,
  `local_jobid` int(11) NOT NULL,
  `local_job_array_index` int(11) NOT NULL DEFAULT -1,
  `local_job_id_raw` int(11) NULL,
  `resource_id` int(11) NOT NULL,
  `systemaccount_id` int(11) NOT NULL,
  `person_id` int(11) NOT NULL,
  `person_organization_id` int(11) NOT NULL,
  `person_nsfstatuscode_id` int(11) NOT NULL,
  `job_task_type_id` int(11) NOT NULL,
  `name` varchar(256) NULL,
  `submit_time_ts` int(11) NOT NULL,
  `start_time_ts` int(11) NOT NULL,
  `end_time_ts` int(11) NOT NULL,
  `eligible_time_ts` int(11) NULL,
  `start_day_id` int(10) unsigned NOT NULL,
  `end_day_id` int(10) unsigned NOT NULL,
  `eligible_day_id` int(10) unsigned NOT NULL,
  `node_count` int(11) NOT NULL DEFAULT -1,
  `processor_count` int(11) NOT NULL DEFAULT -1,
  `gpu_count` int(11) NOT NULL DEFAULT 0,
  `memory_kb` int(11) NOT NULL DEFAULT -1,
  `wallduration` int(11) NOT NULL,
  `waitduration` int(11) NOT NULL,
  `cpu_time` decimal(18,0) NOT NULL,
  `gpu_time` decimal(18,0) NOT NULL,
  `local_charge_su` decimal(18,3) NOT NULL DEFAULT 0,
  `adjusted_charge_su` decimal(18,3) NOT NULL DEFAULT 0,
  `local_charge_xdsu` decimal(18,3) NULL,
  `adjusted_charge_xdsu` decimal(18,3) NULL,
  `local_charge_nu` decimal(18,3) NULL,
  `adjusted_charge_nu` decimal(18,3) NULL,
  `group_name` varchar(255) NULL,
  `gid_number` int(10) unsigned NULL,
  `uid_number` int(10) unsigned NULL,
  `exit_code` varchar(32) NULL,
  `exit_state` varchar(32) NULL,
  `cpu_req` int(10) unsigned NULL,
  `mem_req` varchar(32) NULL,
  `timelimit` int(10) unsigned NULL,
  `conversion_factor` double NULL,
  `completed` tinyint(1) NOT NULL DEFAULT 0,
  `last_modified` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  `is_deleted` tinyint(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`job_id`, `creation_time`),
  KEY `jobid` (`job_id`),
  KEY `localjobid` (`local_jobid`, `local_job_array_index`, `resource_id`),
  KEY `completed` (`completed`),
  KEY `fk_job_task_type` (`job_task_type_id`),
  KEY `fk_person` (`person_id`),
  KEY `fk_resource` (`resource_id`),
  KEY `index_supremm_lookup` (`local_job_id_raw`, `resource_id`),
  KEY `index_start_time_resource_id` (`start_time_ts`, `resource_id`),
  KEY `aggregation_index` (`start_day_id`, `end_day_id`),
  KEY `deleted` (`is_deleted`, `end_day_id`, `start_day_id`),
  UNIQUE KEY `uniq` (`local_job_id_raw`, `job_id_origin_id`, `job_record_id`),
  KEY `job_id_origin_id_idx` (`job_id_origin_id`),
  KEY `index_last_modified` (`last_modified`)
) ENGINE=InnoDB COMMENT='Consumption of resources';

-- modw_cloud.event (cloud_common/event.json): one row per (resource, instance, event time to the
-- microsecond, event type, host); instance_id and host_id are 1 when unknown.
CREATE TABLE IF NOT EXISTS `${modw_cloud}`.`event` (
  `resource_id` int(11) NOT NULL,
  `event_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `instance_id` int(11) NOT NULL DEFAULT 1,
  `event_time_ts` decimal(16,6) NOT NULL DEFAULT '0.000000',
  `person_id` int(11) NOT NULL DEFAULT -1,
  `systemaccount_id` int(11) NOT NULL DEFAULT -1,
  `event_type_id` int(11) NOT NULL DEFAULT -1,
  `record_type_id` int(11) NOT NULL DEFAULT -1,
  `host_id` int(11) NOT NULL,
  `submission_venue_id` int(5) NOT NULL DEFAULT -1,
  `domain_id` int(11) NOT NULL DEFAULT -1,
  `service_provider` int(11) NOT NULL DEFAULT -1,
  `last_modified` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  PRIMARY KEY (`resource_id`, `instance_id`, `event_time_ts`, `event_type_id`, `host_id`),
  UNIQUE KEY `increment_key` (`event_id`),
  KEY `fk_event_type` (`event_type_id`),
  KEY `fk_instance` (`instance_id`, `resource_id`),
  KEY `index_last_modified` (`last_modified`)
) ENGINE=InnoDB COMMENT='Events on an instance';
