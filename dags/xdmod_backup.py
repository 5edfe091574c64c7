"""Airflow DAG file: XDMoD's weekly backup and the restore DAG, from the site config's `backup` section.

Wiring only; the DAGs are built by xdmod_usage.dag_factory.
"""

from xdmod_usage.dag_factory import build_backup_dags

globals().update(build_backup_dags())
