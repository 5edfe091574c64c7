"""Airflow DAG file: one aggregation DAG per XDMoD realm (jobs, cloud), scheduled on the ingest events of
that realm's resources in the site config ($XDMOD_USAGE_CONFIG).

Wiring only; the DAGs are built by xdmod_usage.dag_factory.
"""

from xdmod_usage.dag_factory import build_aggregation_dags

globals().update(build_aggregation_dags())
