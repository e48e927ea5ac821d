#!/usr/bin/env bash
# Run a command inside the project's environment (after scripts/setup.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$@"
