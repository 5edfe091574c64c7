#!/usr/bin/env bash
# Install what the project needs on a Debian 12 machine and create .venv from the pinned lock.
# Safe to re-run: packages already present and an up-to-date .venv are left alone.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
APT_PACKAGES=(mariadb-server mariadb-client munge slurmctld slurmd slurmdbd slurm-client
              libmariadb-dev pkg-config faketime libfaketime gawk openssh-server prometheus
              chromium chromium-driver docker-compose)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$REPO/.venv/.requirements.sha256"
want="$(sha256sum "$REPO/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$REPO/.venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: creating .venv with $("$PYTHON" --version) from requirements.txt"
  "$PYTHON" -m venv "$REPO/.venv"
  # pip's notes about absent local index mirrors are noise; real errors still fail the step.
  "$REPO/.venv/bin/python" -m pip install -q --upgrade pip 2>&1 | { grep -v "^WARNING: Location" || true; }
  "$REPO/.venv/bin/python" -m pip install -q -r "$REPO/requirements.txt" 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" >"$stamp"
fi
echo "setup: ready ($("$REPO/.venv/bin/python" -c 'import airflow; print("airflow", airflow.__version__)'))"
