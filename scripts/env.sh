# Sourced by scripts/run.sh: the environment our nodes, tests and demo run in.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FLUOROSAM_ROOT="$ROOT"
export VIRTUAL_ENV="${FLUOROSAM_VENV:-$ROOT/.venv}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# Large shared-memory segments: without them best-effort 512^2 images at 30 Hz lose most
# frames between processes.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$ROOT/config/fastdds_profile.xml}"
# The simulation stays on this machine unless the user says otherwise (a real C-arm on the
# network needs SUBNET or SYSTEM_DEFAULT).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROOT/.ros/log}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$ROOT/.cache/numba}"
