#!/usr/bin/env bash
# Wheels for the device machine (offline, its own Python 3.12 image with torch, Lightning and torchmetrics) of
# the packages its image lacks, at the versions of this checkout's .venv, into .whl/ (git-ignored; carried by
# the device call). Pure-Python packages published only as source are built into wheels here.
#   bash experiments/benchmarks/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
names="hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher hydra-submitit-launcher submitit wandb cwevals
  opentelemetry-api opentelemetry-sdk opentelemetry-proto opentelemetry-semantic-conventions opentelemetry-exporter-otlp-proto-http
  opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-http-transport opentelemetry-exporter-otlp-common
  googleapis-common-protos pydantic pydantic-core annotated-types typing-inspection platformdirs distro sniffio
  facexlib filterpy face-alignment"
pins=$(.venv/bin/python - $names <<'PY'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
PY
)
mkdir -p .whl
grep -qxF /.whl/ .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo /.whl/ >> .git/info/exclude; }
for pin in $pins; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pin" 2>/dev/null \
    || python3 -m pip wheel -q --no-deps -w .whl "$pin"
done
ls .whl
