import numpy as np
import pytest

from fluorosam_ros.control.anatomy import UnknownStructure

from fluorosam_ros.control.safety import PlanningInputError
from fluorosam_ros.control.twin_prior import (RegistrationErrorConfig, TwinPrior, rigid_difference,
                                              sample_registration_error)
from fluorosam_ros.geometry.transforms import apply


def test_injected_error_has_the_configured_size_and_is_seeded():
    centre = np.array([10.0, -40.0, -200.0])
    for translation, rotation in ((15.0, 5.0), (30.0, 0.0), (0.0, 10.0)):
        error = sample_registration_error(RegistrationErrorConfig(translation, rotation, seed=3), centre)
        t_err, r_err = rigid_difference(error, np.eye(4), centre)
        assert t_err == pytest.approx(translation, abs=1e-9)
        assert r_err == pytest.approx(rotation, abs=1e-6)
    a = sample_registration_error(RegistrationErrorConfig(seed=1), centre)
    assert np.array_equal(a, sample_registration_error(RegistrationErrorConfig(seed=1), centre))
    assert not np.allclose(a, sample_registration_error(RegistrationErrorConfig(seed=2), centre))
    with pytest.raises(PlanningInputError):
        RegistrationErrorConfig(translation_mm=-1.0)
    with pytest.raises(PlanningInputError):
        RegistrationErrorConfig(rotation_deg=float("nan"))


def test_twin_prior_places_the_labels_under_its_registration(default_patient, truth_prior):
    name = "kidney_left"
    truth = truth_prior.localise(name)
    # strided sampling of the label keeps the centroid within a voxel of the exact one
    assert np.linalg.norm(truth.centroid_world - default_patient.structure_centroid_world(name)) < 1.0
    assert truth.source == "twin"
    wrong = TwinPrior.with_injected_error(default_patient, RegistrationErrorConfig(seed=5), name)
    moved = wrong.localise(name)
    # the error is 15 mm at the structure's centre, where the rotation was applied
    assert np.linalg.norm(moved.centroid_world - truth.centroid_world) == pytest.approx(15.0, abs=0.05)
    np.testing.assert_allclose(moved.centroid_world, apply(wrong.world_from_twin, truth.centroid_world), atol=1e-6)
    with pytest.raises(UnknownStructure, match="unknown structure"):
        truth_prior.localise("not_a_structure")
    # a vocabulary group is the union of its members in the twin
    lungs = truth_prior.localise("lung_left")
    upper = truth_prior.localise("lung_upper_lobe_left")
    assert len(lungs.points_world) > len(upper.points_world)
    with pytest.raises(PlanningInputError):
        TwinPrior(default_patient, np.full((4, 4), np.nan))
