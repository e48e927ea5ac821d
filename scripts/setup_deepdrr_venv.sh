#!/usr/bin/env bash
# Create a SEPARATE virtual environment holding the real DeepDRR library
# (GPL-3). It is used only by test/fixtures/make_deepdrr_fixture.py to produce
# reference C-arm projection matrices; nothing in fluorosam_ros imports deepdrr.
#
# Usage: scripts/setup_deepdrr_venv.sh [VENV_PATH]   (default: <repo>/.venv-deepdrr)
# Idempotent: re-running on an existing, working venv only re-checks it.
# Needs ~4 GB of disk and ~2.5 min on a fresh venv; no GPU needed (geometry only).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-${REPO_ROOT}/.venv-deepdrr}"
PYTHON="${PYTHON:-python3}"

# open3d (pulled in by deepdrr) needs libusb-1.0 at import time.
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
    # resolves a multi-GB CUDA torch. (torch==2.13.0 resolves to the local
    # 2.13.0+cpu wheel through this machine's pip find-links.)
    #  - cupy-cuda12x<14 : newer releases pull numpy 2, which breaks deepdrr 1.2.2
    #  - cuda-python<13  : 13.x no longer ships the cudart module deepdrr imports
    #  - numba           : imported by deepdrr but not declared as a dependency
    #  - killeengeo      : holds the actual camera/frame maths; pinned so the
    #                      fixture stays reproducible
    "${VENV}/bin/python" -m pip install --disable-pip-version-check \
        "deepdrr==1.2.2" \
        "torch==2.13.0" \
        "killeengeo==0.0.5" \
        "numpy==1.26.4" \
        "cupy-cuda12x==13.6.0" \
        "cuda-python==12.9.10" \
        "numba==0.68.1" \
        "open3d==0.20.0"
fi

# torchvision: deepdrr declares it, and deepdrr.utils.data_utils imports
# download_url/extract_archive from it at import time, but only uses them to
# download sample data. The PyPI torchvision wheel is built against CUDA torch
# and fails to import beside torch 2.13.0+cpu ("operator torchvision::nms does
# not exist"). Replace it with a tiny stub providing just those two names.
SITE="$("${VENV}/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! grep -qs 'fluorosam_ros torchvision stub' "${SITE}/torchvision/__init__.py"; then
    echo "[setup_deepdrr_venv] replacing torchvision with a download-helper stub"
    "${VENV}/bin/python" -m pip uninstall --disable-pip-version-check -y torchvision || true
    rm -rf "${SITE}/torchvision"
    mkdir -p "${SITE}/torchvision/datasets"
    cat > "${SITE}/torchvision/__init__.py" <<'PYEOF'
"""fluorosam_ros torchvision stub (scripts/setup_deepdrr_venv.sh).

The real torchvision wheel cannot load beside CPU torch 2.13.0; deepdrr only
needs torchvision.datasets.utils.{download_url, extract_archive} to exist.
"""
__version__ = "0.0.0+fluorosam_stub"
PYEOF
    : > "${SITE}/torchvision/datasets/__init__.py"
    cat > "${SITE}/torchvision/datasets/utils.py" <<'PYEOF'
"""fluorosam_ros torchvision stub: downloads are not available in this venv."""


def download_url(*args, **kwargs):
    raise RuntimeError("torchvision stub: download_url is not available in the deepdrr venv")


def extract_archive(*args, **kwargs):
    raise RuntimeError("torchvision stub: extract_archive is not available in the deepdrr venv")
PYEOF
fi

# Smoke test: geometry only (no CUDA needed). Import takes ~15-20 s.
"${VENV}/bin/python" - <<'PYEOF'
import importlib.metadata as m
import deepdrr
c = deepdrr.MobileCArm()
c.move_to(alpha=10, beta=-5, isocenter=[0, 0, 0], degrees=True)
P = c.get_camera_projection().index_from_world.data
assert P.shape == (3, 4), P.shape
print("[setup_deepdrr_venv] OK: deepdrr", m.version("deepdrr"),
      "killeengeo", m.version("killeengeo"), "index_from_world", P.shape)
PYEOF
