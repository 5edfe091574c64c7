"""Airflow DAG file: the manual reload of one job resource's history from the staging archive.

Wiring only; the DAG is built by xdmod_usage.dag_factory.
"""

from xdmod_usage.dag_factory import build_reload_dags

globals().update(build_reload_dags())
