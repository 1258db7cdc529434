"""What makes an overlay readable on its own: a caption strip (method, class, score) and a
colour bar of the overlay's colormap with its scale."""

from __future__ import annotations

import cv2
import numpy as np

CAPTION_HEIGHT = 28
BAR_WIDTH = 18
BAR_MARGIN = 44  # white space right of the bar for its tick labels
FONT = cv2.FONT_HERSHEY_SIMPLEX


def caption_text(text: str) -> str:
    """`text` as OpenCV's Hershey fonts can draw it: printable ASCII, other characters as '?'."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:60]


def captioned(rgb: np.ndarray, caption: str) -> np.ndarray:
    """`rgb` (H, W, 3) under a white strip holding `caption` in black."""
    out = np.full((CAPTION_HEIGHT + rgb.shape[0], rgb.shape[1], 3), 255, np.uint8)
    out[CAPTION_HEIGHT:] = rgb
    cv2.putText(out, caption_text(caption), (6, CAPTION_HEIGHT - 9), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def colour_bar(height: int) -> np.ndarray:
    """A vertical bar (height, BAR_WIDTH + BAR_MARGIN, 3) of the overlay's inferno colormap,
    saliency 1 at the top and 0 at the bottom, ticks at 0, 0.5 and 1. Where the overlay is
    drawn, a value's colour is this colour at opacity 0.75 sqrt(value) over the photo."""
    out = np.full((height, BAR_WIDTH + BAR_MARGIN, 3), 255, np.uint8)
    pad = 8
    span = max(1, height - 2 * pad)
    levels = np.round(np.linspace(255, 0, span)).astype(np.uint8)[:, None]
    colours = cv2.applyColorMap(levels, cv2.COLORMAP_INFERNO)[..., ::-1]
    out[pad:pad + span, 4:4 + BAR_WIDTH] = colours
    for value in (1.0, 0.5, 0.0):
        y = pad + round((1 - value) * (span - 1))
        cv2.line(out, (4 + BAR_WIDTH, y), (8 + BAR_WIDTH, y), (0, 0, 0), 1)
        cv2.putText(out, f"{value:g}", (11 + BAR_WIDTH, min(height - 2, y + 4)), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def with_legend(picture: np.ndarray, caption: str | None) -> np.ndarray:
    """`picture` with a colour bar on its right and, when given, `caption` above."""
    framed = np.concatenate([picture, colour_bar(picture.shape[0])], axis=1)
    return framed if caption is None else captioned(framed, caption)
