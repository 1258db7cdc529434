"""One picture of several methods' maps side by side (`explain --compare`): the photo,
then each method's overlay, each tile under a caption, four tiles to a row."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .legend import captioned
from .overlay import overlay

TILE_WIDTH = 320
TILES_PER_ROW = 4
GAP = 6


def captioned_tile(rgb: np.ndarray, caption: str, width: int = TILE_WIDTH) -> np.ndarray:
    """`rgb` resized to `width` (aspect kept) under a white strip holding `caption`."""
    height = max(1, round(rgb.shape[0] * width / rgb.shape[1]))
    shrink = cv2.INTER_AREA if width < rgb.shape[1] else cv2.INTER_LINEAR
    return captioned(cv2.resize(rgb, (width, height), interpolation=shrink), caption)


def compare_grid(rgb: np.ndarray, photo_caption: str, maps: Sequence[tuple[str, np.ndarray]]) -> np.ndarray:
    """The photo and one overlay per (caption, saliency (H, W) in [0, 1]) of `maps`, in rows
    of TILES_PER_ROW tiles on white, (rows, cols, 3) uint8 RGB."""
    tiles = [captioned_tile(rgb, photo_caption)] + [captioned_tile(overlay(rgb, s), c) for c, s in maps]
    height = tiles[0].shape[0]
    columns = min(TILES_PER_ROW, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * height + (rows - 1) * GAP, columns * TILE_WIDTH + (columns - 1) * GAP, 3), 255, np.uint8)
    for number, tile in enumerate(tiles):
        top, left = (number // columns) * (height + GAP), (number % columns) * (TILE_WIDTH + GAP)
        grid[top:top + height, left:left + TILE_WIDTH] = tile
    return grid
