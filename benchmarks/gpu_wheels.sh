#!/usr/bin/env bash
# Fill .gpu_wheels/ with what benchmarks/gpu_check.sh may need on a GPU machine without network
# and without pytest (Python 3.12): pytest and its dependencies, pure-Python wheels. Carry the
# folder along (it is git-ignored); gpu_check.sh installs from it when pytest is missing.
set -eu
cd "$(dirname "$0")/.."
python3 -m pip download -q --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
  --platform manylinux2014_x86_64 -d .gpu_wheels pytest
ls .gpu_wheels
