"""Overlays for people: the frame, the collimator outline, masks and labels (PIL, no ROS)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .geometry.collimation import Collimation

COLLIMATOR_COLOUR = (255, 200, 0)
MASK_COLOURS = [(0, 220, 255), (255, 80, 80), (120, 255, 120), (255, 120, 255), (255, 255, 120)]


def to_rgb(display: np.ndarray) -> Image.Image:
    """A display image (float [0, 1], uint8 or uint16) as an RGB picture."""
    if display.dtype == np.uint16:
        gray = (display >> 8).astype(np.uint8)
    elif display.dtype == np.uint8:
        gray = display
    else:
        gray = np.round(np.clip(display, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it."""
    padded = np.pad(mask.astype(bool), 1)
    interior = (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
                & padded[1:-1, :-2] & padded[1:-1, 2:])
    return mask.astype(bool) & ~interior


def draw_collimator(image: Image.Image, collimation: Collimation, width_px: int = 2) -> None:
    if not collimation.enabled:
        return
    draw = ImageDraw.Draw(image)
    draw.rectangle([collimation.col_min_px, collimation.row_min_px,
                    collimation.col_max_px - 1, collimation.row_max_px - 1],
                   outline=COLLIMATOR_COLOUR, width=width_px)
    if collimation.iris_radius_px > 0:
        c, r, radius = (collimation.iris_center_col_px, collimation.iris_center_row_px,
                        collimation.iris_radius_px)
        draw.ellipse([c - radius, r - radius, c + radius, r + radius], outline=COLLIMATOR_COLOUR,
                     width=width_px)


def overlay(display: np.ndarray, collimation: Collimation | None = None,
            masks: Sequence[np.ndarray] = (), labels: Sequence[str] = (), caption: str = "") -> Image.Image:
    """The frame with mask outlines (and a light fill), the collimator and text."""
    image = to_rgb(display)
    pixels = np.asarray(image).copy()
    for index, mask in enumerate(masks):
        colour = np.array(MASK_COLOURS[index % len(MASK_COLOURS)])
        mask = mask.astype(bool)
        pixels[mask] = (0.75 * pixels[mask] + 0.25 * colour).astype(np.uint8)
        pixels[mask_outline(mask)] = colour
    image = Image.fromarray(pixels)
    if collimation is not None:
        draw_collimator(image, collimation)
    draw = ImageDraw.Draw(image)
    lines = [caption] if caption else []
    lines += [f"{name}" for name in labels]
    for index, text in enumerate(lines):
        colour = (255, 255, 255) if index == 0 and caption else MASK_COLOURS[(index - bool(caption)) % len(MASK_COLOURS)]
        draw.text((6, 6 + 14 * index), text, fill=colour)
    return image


def contact_sheet(images: Sequence[Image.Image], columns: int = 4, path: str | Path | None = None) -> Image.Image:
    """Tile images (resized to the first one's size) into one picture."""
    if not images:
        raise ValueError("no images for the contact sheet")
    width, height = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (width * min(columns, len(images)), height * rows))
    for index, image in enumerate(images):
        sheet.paste(image.resize((width, height)), ((index % columns) * width, (index // columns) * height))
    if path is not None:
        sheet.save(path)
    return sheet
