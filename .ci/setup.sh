#!/usr/bin/env bash
# Everything the demo and the tests need on a fresh Debian machine (run as root or with sudo):
# system packages, Python packages, and the services (dockerd, a local registry).
# Idempotent: what is already installed or running is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PYTHON="${PYTHON:-python3}"

missing=()
# chromium: headless, it opens the run reports in tests/test_run_report.py.
for pair in dockerd:docker.io docker-registry:docker-registry mmdebstrap:mmdebstrap git:git chromium:chromium; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The real terraform and its AWS provider come with the machine image (/usr/local/bin/terraform
# and the unpacked provider mirror /opt/tf-plugins): no package registry reachable here ships
# them (Debian has no terraform package; PyPI's wrappers download it at run time).
if ! command -v terraform >/dev/null 2>&1 \
    || [ ! -d "${QUETZAL_TERRAFORM_MIRROR:-/opt/tf-plugins}/registry.terraform.io/hashicorp/aws" ]; then
  echo "setup: WARNING: terraform or its AWS provider mirror is missing: the real-terraform tests" \
       "fail under CI=true (skip elsewhere)" >&2
fi

echo "setup: installing Python packages"
"$PYTHON" -m pip install -q --disable-pip-version-check -r requirements-test.txt -r benchmarks/requirements.txt

# checkov pins an old boto3 and ships its own hcl2: it gets a venv of its own.
CHECKOV_VENV="${CHECKOV_VENV:-$HOME/.cache/quetzal-template/checkov-venv}"
if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  echo "setup: installing checkov in $CHECKOV_VENV"
  "$PYTHON" -m venv "$CHECKOV_VENV"
  "$CHECKOV_VENV/bin/python" -m pip install -q --disable-pip-version-check checkov
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd"
  $SUDO sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start, see /tmp/dockerd.log" >&2; exit 1; }
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
  echo "setup: starting the local registry on 127.0.0.1:5000"
  nohup docker-registry serve .ci/registry.yml >/tmp/registry.log 2>&1 &
  for _ in $(seq 1 30); do (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 1; done
fi
# No image can be pulled: the tests' stand-in Lambda base image is built locally (kept once built).
echo "setup: stand-in Lambda base image"
"$PYTHON" tests/support/lambda_base/build.py
echo "setup: done"
