import numpy as np
import pytest
from PIL import Image

from fluorosam_ros.data.xray_io import XrayFileError, display_from_attenuation, load_xray


def test_real_radiograph_from_pydicom_data_is_bone_bright():
    image = load_xray("pydicom-data:RG1_UNCR.dcm")   # chest PA, MONOCHROME1
    assert image.shape == (1955, 1841) and image.dtype == np.float32
    height, width = image.shape
    # the spine/mediastinum (centre column band) attenuates more than the lung fields beside it
    centre = image[height // 3: 2 * height // 3, width // 2 - 60: width // 2 + 60].mean()
    lungs = image[height // 3: 2 * height // 3, width // 4 - 60: width // 4 + 60].mean()
    assert centre > lungs
    display = display_from_attenuation(image)
    assert display.min() == 0.0 and display.max() == 1.0


def test_png_and_npy(tmp_path):
    array = np.linspace(0, 255, 64 * 48, dtype=np.float32).reshape(48, 64)
    Image.fromarray(array.astype(np.uint8)).save(tmp_path / "x.png")
    np.save(tmp_path / "x.npy", array)
    assert load_xray(tmp_path / "x.png").shape == (48, 64)
    np.testing.assert_array_equal(load_xray(tmp_path / "x.npy"), array)


@pytest.mark.parametrize("name, content, reason", [
    ("broken.dcm", b"not a dicom file at all", "not a readable DICOM"),
    ("broken.png", b"\x89PNG garbage", "not a readable picture"),
    ("missing.png", None, "no such file"),
])
def test_bad_files_are_clear_errors(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(XrayFileError, match=reason):
        load_xray(path)


def test_non_finite_and_wrong_shape_arrays_are_refused(tmp_path):
    bad = np.ones((16, 16), dtype=np.float32)
    bad[3, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    np.save(tmp_path / "cube.npy", np.ones((4, 16, 16), dtype=np.float32))
    with pytest.raises(XrayFileError, match="NaN"):
        load_xray(tmp_path / "nan.npy")
    with pytest.raises(XrayFileError, match="2-D"):
        load_xray(tmp_path / "cube.npy")
    with pytest.raises(XrayFileError, match="pydicom-data"):
        load_xray("pydicom-data:NO_SUCH_FILE.dcm")
