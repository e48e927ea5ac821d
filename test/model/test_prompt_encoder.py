from __future__ import annotations

import math

import pytest
import torch

from fluorosam_ros.model.prompt_encoder import PositionEmbeddingRandom, PromptEncoder


@pytest.fixture
def encoder() -> PromptEncoder:
    torch.manual_seed(0)
    return PromptEncoder(embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256))


def _points(batch: int, n: int, label: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    coords = torch.rand(batch, n, 2) * 255
    return coords, torch.full((batch, n), label)


def test_grid_encoding_is_unit_sin_cos_pairs():
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(num_pos_feats=16)
    grid = pe((16, 12))
    assert grid.shape == (32, 16, 12)
    torch.testing.assert_close(grid[:16] ** 2 + grid[16:] ** 2, torch.ones(16, 16, 12))


def test_grid_encoding_matches_point_encoding_at_cell_centres():
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(num_pos_feats=16)
    grid = pe((8, 4))  # h = 8 rows, w = 4 columns
    # Cell (row 5, col 3) of an 8 x 4 grid over a 64 x 32 (H x W) image: centre x = 28, y = 44.
    point = pe.forward_with_coords(torch.tensor([[[28.0, 44.0]]]), (64, 32))
    torch.testing.assert_close(point[0, 0], grid[:, 5, 3])


def test_x_is_normalised_by_width_and_y_by_height():
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(num_pos_feats=16)
    wide = pe.forward_with_coords(torch.tensor([[[25.0, 50.0]]]), (100, 50))
    square = pe.forward_with_coords(torch.tensor([[[50.0, 50.0]]]), (100, 100))
    torch.testing.assert_close(wide, square)


def test_same_coordinate_same_encoding_and_different_coordinates_differ():
    torch.manual_seed(0)
    pe = PositionEmbeddingRandom(num_pos_feats=64)
    coords = torch.tensor([[[10.0, 20.0], [10.0, 20.0], [11.0, 20.0], [20.0, 10.0]]])
    enc = pe.forward_with_coords(coords, (256, 256))[0]
    torch.testing.assert_close(enc[0], enc[1])
    assert (enc[0] - enc[2]).abs().max() > 1e-3
    assert (enc[0] - enc[3]).abs().max() > 1e-1


def test_position_embedding_rejects_bad_scale():
    with pytest.raises(ValueError):
        PositionEmbeddingRandom(8, scale=0.0)


def test_point_embedding_is_shifted_positional_encoding_plus_label(encoder):
    coords = torch.tensor([[[10.0, 200.0]]])
    sparse, _ = encoder((coords, torch.tensor([[1]])), torch.zeros(1, 1, 32))
    expected = (encoder.pe_layer.forward_with_coords(coords + 0.5, (256, 256))[0, 0]
                + encoder.point_embeddings.weight[1])
    torch.testing.assert_close(sparse[0, 0], expected)


def test_positive_and_negative_labels_differ(encoder):
    coords = torch.tensor([[[40.0, 60.0], [40.0, 60.0]]])
    sparse, _ = encoder((coords, torch.tensor([[1, 0]])), None)
    assert (sparse[0, 0] - sparse[0, 1]).abs().max() > 1e-3
    label_gap = encoder.point_embeddings.weight[1] - encoder.point_embeddings.weight[0]
    torch.testing.assert_close(sparse[0, 0] - sparse[0, 1], label_gap)


def test_points_alone_get_one_padding_token(encoder):
    sparse, dense = encoder(_points(3, 2), None)
    assert sparse.shape == (3, 3, 32)
    torch.testing.assert_close(sparse[:, 2], encoder.not_a_point_embed.weight.expand(3, -1))
    assert dense.shape == (3, 32, 16, 16)


def test_explicit_padding_label_ignores_coordinates(encoder):
    coords = torch.tensor([[[5.0, 7.0], [100.0, 30.0]]])
    sparse, _ = encoder((coords, torch.tensor([[1, -1]])), torch.zeros(1, 1, 32))
    torch.testing.assert_close(sparse[0, 1], encoder.not_a_point_embed.weight[0])


def test_points_with_text_are_not_padded_and_text_passes_through(encoder):
    text = torch.randn(2, 1, 32)
    sparse, _ = encoder(_points(2, 2), text)
    assert sparse.shape == (2, 3, 32)
    torch.testing.assert_close(sparse[:, 2:], text)
    sparse_text_only, _ = encoder(None, text)
    torch.testing.assert_close(sparse_text_only, text)


def test_dense_is_the_no_mask_embedding_and_dense_pe_shape(encoder):
    _, dense = encoder(None, torch.randn(4, 1, 32))
    assert dense.shape == (4, 32, 16, 16)
    no_mask = encoder.no_mask_embed.weight.reshape(1, 32, 1, 1)
    torch.testing.assert_close(dense, no_mask.expand_as(dense))
    assert encoder.get_dense_pe().shape == (1, 32, 16, 16)


@pytest.mark.parametrize("batch", [1, 5])
def test_full_size_shapes(batch):
    encoder = PromptEncoder(embed_dim=256, image_embedding_size=(16, 16),
                            input_image_size=(256, 256))
    sparse, dense = encoder(_points(batch, 1), torch.randn(batch, 1, 256))
    assert sparse.shape == (batch, 2, 256)
    assert dense.shape == (batch, 256, 16, 16)
    assert encoder.get_dense_pe().shape == (1, 256, 16, 16)


@pytest.mark.parametrize("points, text, match", [
    (None, None, "neither"),
    (_points(2, 1), torch.zeros(3, 1, 32), "batch"),
    ((torch.zeros(1, 1, 2), torch.tensor([[2]])), None, "labels"),
    ((torch.tensor([[[float("nan"), 1.0]]]), torch.tensor([[1]])), None, "NaN"),
    ((torch.zeros(1, 2, 3), torch.ones(1, 2)), None, r"\(B, N, 2\)"),
    ((torch.zeros(1, 2, 2), torch.ones(1, 3)), None, "labels"),
    (None, torch.zeros(1, 32), "text_tokens"),
    (None, torch.zeros(1, 1, 16), "text_tokens"),
])
def test_bad_inputs_raise(encoder, points, text, match):
    with pytest.raises(ValueError, match=match):
        encoder(points, text)


def test_odd_embed_dim_rejected():
    with pytest.raises(ValueError):
        PromptEncoder(embed_dim=33)


def test_features_are_sin_cos_of_two_pi_times_projection_of_centred_coordinates():
    pe = PositionEmbeddingRandom(num_pos_feats=1)
    pe.gaussian_matrix.copy_(torch.tensor([[1.0], [0.0]]))
    # x = 0.75 of the width -> centred 0.5 -> phase 2 * pi * 0.5 = pi; y has zero weight.
    enc = pe.forward_with_coords(torch.tensor([[[75.0, 13.0]]]), (50, 100))[0, 0]
    torch.testing.assert_close(enc, torch.tensor([math.sin(math.pi), math.cos(math.pi)]))
