from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from fluorosam_ros.twin.patient import LPS_FROM_RAS, Patient, PatientError, read_structure_names


def test_default_patient_is_the_labelled_chest_ct(default_patient):
    assert default_patient.shape == (512, 512, 133)
    np.testing.assert_allclose(default_patient.spacing_mm, [0.703125, 0.703125, 2.5], rtol=1e-6)
    assert len(default_patient.present_labels) == 89
    # -2048 pads the corners outside the scanner's field of view; it renders as air (density 0)
    assert default_patient.hu.min() >= -2048 and default_patient.hu.max() > 1000
    for name in ("heart", "lung_upper_lobe_left", "vertebrae_L1", "rib_right_5", "liver"):
        assert default_patient.structure_voxels(name).any(), name


def test_lps_orientation_left_lung_is_on_patient_left(default_patient):
    left = default_patient.structure_centroid_world("lung_upper_lobe_left")
    right = default_patient.structure_centroid_world("lung_upper_lobe_right")
    heart = default_patient.structure_centroid_world("heart")
    spine = default_patient.structure_centroid_world("vertebrae_T8")
    liver = default_patient.structure_centroid_world("liver")
    assert left[0] > right[0]          # L is +x
    assert heart[1] < spine[1]         # anterior is -y: the heart lies in front of the spine
    assert liver[2] < left[2]          # superior is +z: the lung apex is above the liver


def _write_pair(tmp_path, labels_affine_scale=1.0):
    hu = np.full((20, 22, 24), -1000, dtype=np.int16)
    hu[5:15, 6:16, 7:17] = 40
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "ct.nii.gz")
    labels = (hu > 0).astype(np.uint8) * 7
    label_affine = affine.copy()
    if labels_affine_scale != 1.0:  # a label map on a coarser grid
        labels = labels[::2, ::2, ::2]
        label_affine[:3, :3] *= 2
        label_affine[:3, 3] = affine[:3, 3] + 0.5 * np.diag(affine)[:3]
    nib.save(nib.Nifti1Image(labels, label_affine), tmp_path / "labels.nii.gz")
    (tmp_path / "names.csv").write_text("label,name\n7,kidney_left\n")
    return affine


def test_any_nifti_pair_loads_with_names(tmp_path):
    affine = _write_pair(tmp_path)
    patient = Patient.from_nifti(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz", tmp_path / "names.csv")
    np.testing.assert_allclose(patient.world_from_voxel, LPS_FROM_RAS @ affine)
    assert patient.structure_names == {7: "kidney_left"}
    assert patient.structure_voxels("kidney_left").sum() == 1000


def test_label_map_on_another_grid_is_resampled(tmp_path):
    _write_pair(tmp_path, labels_affine_scale=2.0)
    patient = Patient.from_nifti(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    assert patient.labels.shape == patient.hu.shape
    overlap = (patient.labels == 7) & (patient.hu > 0)
    assert overlap.sum() / (patient.hu > 0).sum() > 0.7
    assert patient.structure_names[7] == "label_7"


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(PatientError, match="not found"):
        Patient.from_nifti(tmp_path / "missing.nii.gz")
    with pytest.raises(PatientError):
        Patient("x", np.zeros((4, 4)), np.eye(4))
    with pytest.raises(PatientError):
        Patient("x", np.zeros((4, 4, 4)), np.zeros((4, 4)))
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(PatientError, match="column"):
        read_structure_names(tmp_path / "bad.csv")
    with pytest.raises(KeyError):
        Patient("x", np.zeros((4, 4, 4)), np.eye(4), np.zeros((4, 4, 4), np.uint16), {}).label_of("heart")
