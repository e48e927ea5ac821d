"""The LiteMedSAM peer as installed by scripts/setup.sh: it loads, and its box and mask frames are right."""

import numpy as np
import pytest

from fluorosam_ros.evaluation.litemedsam import LiteMedSAMUnavailable, load_litemedsam
from fluorosam_ros.evaluation.metrics import dice

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def peer():
    return load_litemedsam()


def _ellipse(shape, centre_rc, radii_rc):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return ((rows - centre_rc[0]) / radii_rc[0]) ** 2 + ((cols - centre_rc[1]) / radii_rc[1]) ** 2 <= 1


@pytest.mark.parametrize("shape", [(256, 256), (180, 300)])
def test_box_prompt_segments_a_bright_ellipse_where_it_is(peer, shape, record_figure):
    rng = np.random.default_rng(0)
    target = _ellipse(shape, (shape[0] * 0.6, shape[1] * 0.35), (shape[0] * 0.18, shape[1] * 0.12))
    image = 0.2 + 0.6 * target + 0.03 * rng.standard_normal(shape)
    rows, cols = np.nonzero(target)
    peer.set_image(image.astype(np.float32))
    mask = peer.predict_box([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    assert mask.shape == shape
    score = dice(mask, target)
    record_figure(f"LiteMedSAM peer, bright ellipse in a {shape[1]}x{shape[0]} image, ground-truth box: Dice {score:.3f}")
    assert score > 0.85


def test_missing_peer_is_a_clear_error(tmp_path):
    with pytest.raises(LiteMedSAMUnavailable, match="scripts/setup.sh"):
        load_litemedsam(tmp_path)
    import sys
    assert "timm" not in sys.modules  # the shim never leaks into the process
