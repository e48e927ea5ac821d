"""The digital twin's configuration (config/twin.yaml), usable without ROS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .detector import DetectorModel
from .patient import Patient, PatientError
from .renderer import BeamConfig, Renderer, build_renderer


@dataclass(frozen=True)
class TwinConfig:
    """`patient_dir`: a folder with ct.nii.gz [+ labels.nii.gz, structures.csv]; or give the
    files one by one. Empty everything = the default patient."""

    patient_dir: str = ""
    ct_path: str = ""
    labels_path: str = ""
    structures_path: str = ""
    renderer: str = "cpu"
    beam_mode: str = "mono"
    kvp: float = 80.0
    filtration_mm_al: float = 2.5
    photons_per_pixel: float = 0.0

    def load_patient(self) -> Patient:
        if self.ct_path:
            return Patient.from_nifti(self.ct_path, self.labels_path or None, self.structures_path or None)
        if self.patient_dir:
            folder = Path(self.patient_dir)
            labels = folder / "labels.nii.gz"
            structures = folder / "structures.csv"
            if not (folder / "ct.nii.gz").is_file():
                raise PatientError(f"{folder} has no ct.nii.gz")
            return Patient.from_nifti(folder / "ct.nii.gz", labels if labels.is_file() else None,
                                      structures if structures.is_file() else None, patient_id=folder.name)
        return Patient.default()

    def build_renderer(self, patient: Patient) -> Renderer:
        beam = BeamConfig(mode=self.beam_mode, kvp=self.kvp, filtration_mm_al=self.filtration_mm_al)
        return build_renderer(self.renderer, patient, beam=beam)

    def detector(self) -> DetectorModel:
        return DetectorModel(photons_per_pixel=self.photons_per_pixel or None)
