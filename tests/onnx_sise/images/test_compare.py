"""The --compare picture: the photo and each map's overlay in rows of four, under captions."""

from __future__ import annotations

import numpy as np

from onnx_sise.images.compare import GAP, TILE_WIDTH, compare_grid
from onnx_sise.images.legend import CAPTION_HEIGHT
from onnx_sise.images.overlay import overlay


def test_grid_holds_the_photo_and_each_overlay_in_rows_of_four() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (200, 400, 3), dtype=np.uint8)
    maps = [(f"m{i}", rng.random((200, 400)).astype(np.float32)) for i in range(5)]
    grid = compare_grid(rgb, "photo", maps)
    tile_height = CAPTION_HEIGHT + 160  # 400 x 200 shown 320 wide
    assert grid.shape == (2 * tile_height + GAP, 4 * TILE_WIDTH + 3 * GAP, 3)
    # the second row's first tile is the fourth map's overlay, under its caption strip
    first = grid[tile_height + GAP + CAPTION_HEIGHT:, :TILE_WIDTH].astype(int)
    import cv2

    expected = cv2.resize(overlay(rgb, maps[3][1]), (TILE_WIDTH, 160), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(first - expected).max() == 0
    assert (grid[tile_height + GAP:, 2 * (TILE_WIDTH + GAP):] == 255).all()  # no tile after the sixth
