"""The legend of an overlay: the colour bar shows matplotlib's inferno from 0 (bottom) to
1 (top), the caption strip sits above, and the picture itself is left as it was."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from onnx_sise.images.legend import BAR_MARGIN, BAR_WIDTH, CAPTION_HEIGHT, caption_text, colour_bar, with_legend


def test_colour_bar_runs_through_inferno_from_one_at_the_top_to_zero_at_the_bottom() -> None:
    bar = colour_bar(300).astype(int)
    column = bar[8:292, 4 + BAR_WIDTH // 2]
    inferno = colormaps["inferno"]
    for row, value in ((0, 1.0), (len(column) - 1, 0.0), (len(column) // 2, 0.5)):
        expected = np.round(np.array(inferno(value)[:3]) * 255)
        assert np.abs(column[row] - expected).max() <= 6, (value, column[row], expected)
    brightness = column.sum(axis=1)
    assert (np.diff(brightness) <= 3).all()  # darker all the way down


def test_with_legend_adds_the_bar_and_the_caption_around_the_untouched_picture() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    framed = with_legend(picture, "sise | class 967 espresso | p=0.923")
    assert framed.shape == (CAPTION_HEIGHT + 120, 200 + BAR_WIDTH + BAR_MARGIN, 3)
    assert (framed[CAPTION_HEIGHT:, :200] == picture).all()
    assert (framed[:CAPTION_HEIGHT] < 128).any()  # the caption's text is drawn
    assert with_legend(picture, None).shape == (120, 200 + BAR_WIDTH + BAR_MARGIN, 3)


def test_captions_are_drawn_in_ascii() -> None:
    assert caption_text("caf\u00e9 \x1b[31m") == "caf? ?[31m"
    assert len(caption_text("x" * 500)) == 60
