"""Usage-accounting ETL for Open XDMoD.

The core modules (config, window, slurm_format, sacct, staging, xdmod_commands, runners) run
without Airflow, so they can be benchmarked and tested on their own; only ``dag_factory`` and
``airflow_tasks`` import Airflow.
"""

__version__ = "0.1.0"
