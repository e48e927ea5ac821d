#!/usr/bin/env bash
# Make (or bring up to date) the separate venv that holds the benchmark's peer,
# diffdrr 0.6.1.  diffdrr never goes into the project's own venv.
#
#   bash bench/peers/setup_diffdrr_venv.sh [VENV_DIR]
#       VENV_DIR defaults to <repo>/bench/.venvs/diffdrr (git-ignored).
#   env: PYTHON      interpreter that makes the venv (default: python3, 3.11)
#        TORCH_SPEC  torch requirement (default: torch==2.13.0+cpu)
#
# Idempotent: every package is pinned, so a second run only checks.
#
# Why --no-deps.  diffdrr 0.6.1 declares matplotlib, seaborn, tqdm, imageio,
# fastcore, pyvista[all], einops, torchvision, scipy, torchio, timm, numpy,
# kornia, roma and torch.  Rendering a DRR (diffdrr.data.read, diffdrr.drr.DRR,
# renderers Siddon/Trilinear, with mask_to_channels) imports only:
#   diffdrr.data      -> numpy, pandas, torch, nibabel, torchio
#   diffdrr.drr       -> numpy, torch, fastcore, torchio
#   diffdrr.detector  -> torch, fastcore
#   diffdrr.pose      -> torch, einops, scipy
#   diffdrr.renderers -> torch
# torchvision/kornia (metrics.py, utils.py), timm (registration.py) and
# pyvista/vtk/matplotlib/imageio/seaborn (visualization.py) are imported only
# by modules that rendering never loads, and roma not at all.  So diffdrr is
# installed with --no-deps next to the explicit, pinned closure below (torch's
# and torchio's own dependencies included), in ONE pip call.  This also avoids
# the torchvision trap: PyPI torchvision does not load beside CPU torch 2.13.0
# ("operator torchvision::nms does not exist"), and the pair that does load
# (torch 2.14.1 + torchvision 0.29.1) is a ~5.5 GB CUDA build.  This venv is
# ~1.6 GB.  `pip check` will list diffdrr's unused requirements as missing:
# that is expected.  The renderer's arithmetic is torch's on CPU either way.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/bench/.venvs/diffdrr}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0+cpu}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "[setup_diffdrr_venv] creating $venv" >&2
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi

# Full closure, pinned (resolved once from torch 2.13.0+cpu + torchio + the
# modules listed above, then frozen).
"$venv/bin/python" -m pip install --no-deps --disable-pip-version-check -q \
    diffdrr==0.6.1 \
    "$torch_spec" \
    filelock==4.2.12 fsspec==2026.9.0 Jinja2==3.1.6 MarkupSafe==3.0.4 \
    networkx==3.6.1 sympy==1.14.0 mpmath==1.3.0 typing_extensions==4.16.0 \
    torchio==1.2.1 \
    Deprecated==1.3.1 wrapt==2.5.2 humanize==4.17.0 importlib_resources==7.1.0 \
    jaxtyping==0.3.11 wadler_lindig==0.1.8 packaging==26.3 \
    pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 \
    typing-inspection==0.4.5 annotated-doc==0.0.7 \
    rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.21.0 \
    typer==0.29.2 shellingham==1.5.4 simpleitk==2.5.7 tqdm==4.70.1 \
    nibabel==5.4.2 numpy==2.4.6 scipy==1.17.1 \
    pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 \
    fastcore==2.2.39 einops==0.8.2 \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# Smoke test: everything the renderer needs imports.
"$venv/bin/python" - <<'EOF'
import diffdrr, torch
from diffdrr.data import read      # noqa: F401
from diffdrr.drr import DRR        # noqa: F401
assert diffdrr.__version__ == "0.6.1", diffdrr.__version__
print(f"[setup_diffdrr_venv] ok: diffdrr {diffdrr.__version__}, torch {torch.__version__}")
EOF
