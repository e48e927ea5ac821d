from __future__ import annotations

import numpy as np
from phantoms import box_patient

from fluorosam_ros.data.deform import DeformationConfig, deform_patient


def test_deformation_is_seeded_bounded_and_keeps_labels(rng):
    patient, _, _ = box_patient(half_size_mm=(12.0, 9.0, 8.0))
    config = DeformationConfig(elastic_amplitude_mm=3.0)
    a = deform_patient(patient, np.random.default_rng(5), config, "a")
    b = deform_patient(patient, np.random.default_rng(5), config, "b")
    c = deform_patient(patient, np.random.default_rng(6), config, "c")
    np.testing.assert_array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, c.hu) or a.shape != c.shape
    assert a.labels.shape == a.hu.shape and a.patient_id.endswith("~a")
    # scaling within +-10 % on each world axis
    scale = np.linalg.norm(a.world_from_voxel[:3, :3], axis=0) / np.linalg.norm(patient.world_from_voxel[:3, :3], axis=0)
    assert np.all((scale > 0.89) & (scale < 1.11))
    # the labelled object survives (volume within +-35 %: scaling and warping change it)
    before = (patient.labels == 1).sum() * np.prod(np.linalg.norm(patient.world_from_voxel[:3, :3], axis=0))
    after = (a.labels == 1).sum() * np.prod(np.linalg.norm(a.world_from_voxel[:3, :3], axis=0))
    assert 0.65 < after / before < 1.35
    # labels stay aligned with the CT: labelled voxels carry the object's HU (plus noise)
    assert np.median(a.hu[a.labels == 1]) > -200
