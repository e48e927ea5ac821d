#!/usr/bin/env bash
# Create a SEPARATE virtual environment holding the real DeepDRR library
# (GPL-3). It is used only by test/fixtures/make_deepdrr_fixture.py to produce
# reference C-arm projection matrices; nothing in fluorosam_ros imports deepdrr.
#
# Usage: scripts/setup_deepdrr_venv.sh [VENV_PATH]   (default: <repo>/.venv-deepdrr)
# Idempotent: re-running on an existing, working venv only re-checks it.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${REPO_ROOT}/.venv-deepdrr}"
PYTHON="${PYTHON:-python3}"

# open3d (pulled in by deepdrr) dlopens libusb-1.0 at import time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so\.0'; then
    echo "[setup_deepdrr_venv] installing libusb-1.0-0 (needed by open3d)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends libusb-1.0-0
fi

if [ ! -x "${VENV}/bin/python" ]; then
    echo "[setup_deepdrr_venv] creating venv at ${VENV}"
    "${PYTHON}" -m venv "${VENV}"
fi

if "${VENV}/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("deepdrr") == "1.2.2" else 1)' 2>/dev/null; then
    echo "[setup_deepdrr_venv] deepdrr 1.2.2 already installed in ${VENV}"
else
    # ONE pip call: torch must be pinned together with deepdrr, otherwise pip
    # resolves a multi-GB CUDA torch.
    #  - cupy-cuda12x<14 : newer releases pull numpy 2, which breaks deepdrr 1.2.2
    #  - cuda-python<13  : 13.x no longer ships the cudart module deepdrr imports
    #  - numba           : imported by deepdrr but not declared as a dependency
    # torchvision (only used by a download helper) is deliberately left out:
    # the PyPI wheel does not work beside the CPU torch 2.13.0 build.
    "${VENV}/bin/python" -m pip install --disable-pip-version-check \
        "deepdrr==1.2.2" \
        "torch==2.13.0" \
        "cupy-cuda12x==13.6.0" \
        "cuda-python==12.9.2" \
        "numba==0.61.2"
fi

# Smoke test: geometry only (no CUDA needed). Import takes ~15-20 s.
"${VENV}/bin/python" - <<'EOF'
import deepdrr, importlib.metadata as m
c = deepdrr.MobileCArm()
c.move_to(alpha=10, beta=-5, degrees=True)
P = c.get_camera_projection().index_from_world
print("[setup_deepdrr_venv] OK: deepdrr", m.version("deepdrr"), "index_from_world shape", P.shape)
EOF
