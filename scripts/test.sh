#!/usr/bin/env bash
# The full test suite: set up (packages, .venv), then pytest. Fixtures start the real services
# (Slurm with accounting on MariaDB, an S3 endpoint) on 127.0.0.1 and stop them by PID.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
scripts/setup.sh
.venv/bin/ruff check plugins dags tests bench
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [[ $status -eq 5 ]]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $status
