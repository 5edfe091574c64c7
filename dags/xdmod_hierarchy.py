"""Airflow DAG file: XDMoD's hierarchy, names and cloud project PIs, from the site config's `hierarchy` section.

Wiring only; the DAG is built by xdmod_usage.dag_factory.
"""

from xdmod_usage.dag_factory import build_hierarchy_dags

globals().update(build_hierarchy_dags())
