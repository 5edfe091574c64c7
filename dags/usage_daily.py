"""Airflow DAG file: one daily usage DAG per resource of the site config ($XDMOD_USAGE_CONFIG).

Wiring only; the DAGs are built by xdmod_usage.dag_factory. An invalid config raises here, which
Airflow shows as an import error naming the file, the key and the reason.
"""

from xdmod_usage.dag_factory import build_usage_dags

globals().update(build_usage_dags())
