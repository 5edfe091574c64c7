#!/usr/bin/env bash
# README command 1: set everything up and run the daily Slurm ETL end to end on local services.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
start=$(date +%s)
scripts/setup.sh
.venv/bin/python scripts/local_run.py "$@"
echo "demo.sh total wall time (with setup): $(( $(date +%s) - start )) s"
