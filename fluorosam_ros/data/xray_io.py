"""Reading X-ray images from files for `fluorosam segment`: DICOM, PNG/JPEG/TIFF and .npy.

Every loader returns the image in the model's convention, attenuation-like: brighter = more
attenuation (bone bright), like our line integrals. DICOM MONOCHROME1 (minimum shown white) is
inverted; the modality rescale is applied. `pydicom-data:<name>` names a file of the
`pydicom-data` package (e.g. `pydicom-data:RG1_UNCR.dcm`, a real chest radiograph).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PYDICOM_DATA_PREFIX = "pydicom-data:"
MAX_PIXELS = 8192 * 8192


class XrayFileError(ValueError):
    """An image file that cannot be read as an X-ray."""


def resolve_image_path(name: str | Path) -> Path:
    text = str(name)
    if text.startswith(PYDICOM_DATA_PREFIX):
        from pydicom.data import get_testdata_file

        found = get_testdata_file(text[len(PYDICOM_DATA_PREFIX):])
        if not found:
            raise XrayFileError(f"{text}: no such file in the pydicom-data package")
        return Path(found)
    path = Path(text)
    if not path.is_file():
        raise XrayFileError(f"{path}: no such file")
    return path


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array.astype(np.float32)
    except Exception as error:  # pydicom raises many kinds for broken files
        raise XrayFileError(f"{path}: not a readable DICOM image ({type(error).__name__}: {error})") from error
    if pixels.ndim != 2:
        raise XrayFileError(f"{path}: expected one grey-scale frame, got pixel data of shape {pixels.shape}")
    pixels = pixels * float(getattr(dataset, "RescaleSlope", 1) or 1) + float(getattr(dataset, "RescaleIntercept", 0) or 0)
    if str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return pixels


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as picture:
            if picture.width * picture.height > MAX_PIXELS:
                raise XrayFileError(f"{path}: {picture.width}x{picture.height} is larger than we accept")
            return np.asarray(picture.convert("F"), dtype=np.float32)
    except (UnidentifiedImageError, OSError) as error:
        raise XrayFileError(f"{path}: not a readable picture ({error})") from error


def load_xray(name: str | Path) -> np.ndarray:
    """(H, W) float32, attenuation-like (bone bright), finite."""
    path = resolve_image_path(name)
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom", ""):
        image = _read_dicom(path)
    elif suffix == ".npy":
        try:
            image = np.load(path, allow_pickle=False).astype(np.float32)
        except (ValueError, OSError) as error:
            raise XrayFileError(f"{path}: not a readable .npy array ({error})") from error
    else:
        image = _read_picture(path)
    if image.ndim != 2 or min(image.shape) < 8:
        raise XrayFileError(f"{path}: expected a 2-D image of at least 8x8 pixels, got {image.shape}")
    if not np.all(np.isfinite(image)):
        raise XrayFileError(f"{path}: the image holds NaN or inf")
    return image


def display_from_attenuation(image: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5) -> np.ndarray:
    """A [0, 1] picture for overlays (bone bright), windowed on robust percentiles."""
    low, high = np.percentile(image, [low_percentile, high_percentile])
    return np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0)
