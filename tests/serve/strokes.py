"""The digits 0-9 as pen strokes on the page's 280x280 canvas, and a Pillow rendering of them.

Each digit is a list of strokes; a stroke is a polyline of canvas points ``(x, y)``, drawn
as a person would (pen down at the first point, up after the last). The shapes follow MNIST's
habits: an open-topped 4, a 7 without a bar, a 1 as a single slanted line.
"""

import io
import math

import numpy as np

SIZE, PEN = 280, 20  # the canvas and pen width of tinydl/serve/page.html


def _ellipse(cx, cy, rx, ry, start=-90.0, sweep=360.0, n=24):
    return [
        (
            round(cx + rx * math.cos(math.radians(start + sweep * i / n))),
            round(cy + ry * math.sin(math.radians(start + sweep * i / n))),
        )
        for i in range(n + 1)
    ]


DIGITS = {
    0: [_ellipse(140, 140, 58, 88)],
    1: [[(150, 45), (146, 100), (141, 170), (136, 235)]],
    2: [
        [
            (85, 95),
            (100, 65),
            (130, 48),
            (165, 50),
            (188, 75),
            (188, 110),
            (165, 150),
            (130, 190),
            (90, 230),
            (140, 230),
            (200, 228),
        ]
    ],
    3: [
        [
            (90, 70),
            (120, 47),
            (165, 48),
            (188, 78),
            (175, 112),
            (135, 133),
            (175, 150),
            (195, 185),
            (180, 220),
            (140, 238),
            (95, 225),
        ]
    ],
    4: [
        [(105, 45), (95, 100), (90, 150), (150, 152), (205, 148)],
        [(178, 50), (175, 140), (172, 240)],
    ],
    5: [
        [
            (190, 50),
            (150, 50),
            (105, 50),
            (98, 90),
            (95, 130),
            (140, 118),
            (180, 140),
            (195, 185),
            (172, 228),
            (125, 240),
            (88, 220),
        ]
    ],
    6: [
        [
            (175, 45),
            (135, 85),
            (105, 140),
            (98, 195),
            (125, 235),
            (168, 232),
            (190, 198),
            (175, 160),
            (135, 150),
            (102, 178),
        ]
    ],
    7: [[(85, 55), (140, 55), (195, 55), (170, 115), (148, 175), (130, 240)]],
    8: [
        [
            (172, 65),
            (140, 45),
            (105, 62),
            (108, 100),
            (140, 135),
            (178, 172),
            (180, 215),
            (140, 240),
            (100, 215),
            (102, 172),
            (140, 135),
            (172, 98),
            (172, 65),
        ]
    ],
    9: [_ellipse(143, 92, 45, 45, start=0, sweep=360) + [(186, 150), (180, 200), (174, 240)]],
}


def render(strokes, size: int = SIZE, pen: int = PEN) -> np.ndarray:
    """The strokes drawn white on black with a round pen, as a uint8 ``(size, size)`` array."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for line in strokes:
        draw.line(line, fill=255, width=pen, joint="curve")
        for x, y in (line[0], line[-1]):
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    return np.asarray(img)


def png(image: np.ndarray) -> bytes:
    """A uint8 grayscale array encoded as PNG."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()
