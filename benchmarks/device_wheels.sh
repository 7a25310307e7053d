#!/usr/bin/env bash
# Wheels the lent GPU machine lacks for `python -m benchmarks.gpu_backends`, downloaded into .whl/.
#
# The device machine (Python 3.12, x86-64, JAX, PyTorch, no TensorFlow) reaches no package registry and
# installs only wheels carried with the working tree (64 MiB with the repo). It has numpy, rich, h5py,
# absl-py, ml-dtypes, packaging, psutil, jinja2, matplotlib and cloudpickle (the device's KINDS.md list);
# Keras and its two missing dependencies, namex and optree, travel here. Versions: those preflight is
# tested with. Run from anywhere inside the checkout whose tree the device call sends; then carry ".whl".
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PYTHON=${PYTHON:-python3}
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0)

# .whl/ must be ignored by git (it travels as a carried path, not as tracked files).
if ! git check-ignore -q .whl; then
    echo '/.whl/' >> "$(git rev-parse --git-path info/exclude)"
fi
rm -rf .whl
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
echo "wheels: $(du -cb .whl/*.whl | tail -1 | cut -f1) bytes; tracked tree: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes (limit 64 MiB = 67108864 together)"
