#!/usr/bin/env python3
"""Draws photo-like pictures of handwritten digits for trying `nerve predict` on your own digit.

Each digit is a few pen strokes (lines and arcs), slightly rotated and slanted, drawn thick and
anti-aliased on unevenly lit, noisy paper at a size nothing like MNIST's 28x28; a few are light
chalk on a dark board, one is ink on a transparent background. Python's standard library only.

    python3 scripts/draw_digits.py examples/digits
    nerve predict runs/lab-e.safetensors examples/digits/*.png
"""
import math
import os
import random
import struct
import sys
import zlib


def arc(cx, cy, rx, ry, start, end, steps=40):
    """Points on an ellipse from angle `start` to `end` in degrees (y grows downwards)."""
    return [(cx + rx * math.cos(math.radians(start + (end - start) * i / steps)),
             cy + ry * math.sin(math.radians(start + (end - start) * i / steps))) for i in range(steps + 1)]


# Strokes of each digit in a unit box, x to the right, y downwards.
STROKES = {
    0: [arc(0.5, 0.5, 0.3, 0.45, 0, 360)],
    1: [[(0.36, 0.2), (0.56, 0.04), (0.56, 0.96)]],
    2: [arc(0.5, 0.3, 0.27, 0.25, 200, 380) + [(0.22, 0.95), (0.84, 0.95)]],
    3: [arc(0.48, 0.27, 0.25, 0.22, -160, 90), arc(0.48, 0.71, 0.29, 0.24, -90, 160)],
    4: [[(0.66, 0.96), (0.66, 0.04), (0.14, 0.68), (0.88, 0.68)]],
    5: [[(0.8, 0.05), (0.32, 0.05), (0.27, 0.44)] + arc(0.5, 0.67, 0.3, 0.28, -130, 150)],
    6: [[(0.7, 0.04), (0.46, 0.2), (0.31, 0.42), (0.24, 0.68)] + arc(0.5, 0.7, 0.26, 0.25, 180, 540)],
    7: [[(0.16, 0.06), (0.84, 0.06), (0.42, 0.96)]],
    8: [arc(0.5, 0.27, 0.22, 0.22, 0, 360), arc(0.5, 0.71, 0.27, 0.25, 0, 360)],
    9: [arc(0.48, 0.3, 0.25, 0.25, 0, 360), [(0.73, 0.3), (0.66, 0.96)]],
}


def render(digit, width, height, rng, ink, paper, light_on_dark=False):
    """Gray values (0 black, 1 white) of a `width` x `height` picture of `digit`."""
    size = min(width, height) * rng.uniform(0.55, 0.75)
    angle = math.radians(rng.uniform(-10, 10))
    slant = rng.uniform(-0.2, 0.1)
    cx = width * rng.uniform(0.42, 0.58)
    cy = height * rng.uniform(0.42, 0.58)
    thickness = size * rng.uniform(0.07, 0.11)
    segments = []
    for stroke in STROKES[digit]:
        pts = []
        for x, y in stroke:
            x, y = (x - 0.5) * 0.75 + slant * (0.5 - y), y - 0.5
            x, y = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
            pts.append((cx + x * size, cy + y * size))
        segments += list(zip(pts, pts[1:]))
    half = thickness / 2
    pixels = []
    for py in range(height):
        for px in range(width):
            x, y = px + 0.5, py + 0.5
            d = 1e9
            for (ax, ay), (bx, by) in segments:
                if min(ax, bx) - half - 1 > x or max(ax, bx) + half + 1 < x:
                    continue
                if min(ay, by) - half - 1 > y or max(ay, by) + half + 1 < y:
                    continue
                vx, vy = bx - ax, by - ay
                t = ((x - ax) * vx + (y - ay) * vy) / (vx * vx + vy * vy or 1)
                t = max(0.0, min(1.0, t))
                d = min(d, math.hypot(x - ax - t * vx, y - ay - t * vy))
            coverage = max(0.0, min(1.0, half + 0.5 - d))
            # Uneven light across the sheet, grain of the paper, a pen that is not perfectly even.
            light = 1 - 0.12 * (px / width) - 0.08 * (py / height)
            background = paper * light + rng.gauss(0, 0.025)
            stroke = ink + rng.gauss(0, 0.03)
            v = background * (1 - coverage) + stroke * coverage
            pixels.append(max(0.0, min(1.0, v)))
    return pixels


def png(path, width, height, channels, samples):
    """Writes 8-bit samples (1 gray, 3 RGB, 4 RGBA channels) as a PNG file."""
    color_type = {1: 0, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + bytes(samples[y * width * channels:(y + 1) * width * channels]) for y in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "examples/digits"
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    for digit in range(10):
        # Ink on paper, photographed in colour: blue-black ink on warm paper.
        w, h = rng.choice([(150, 190), (200, 160), (120, 120), (240, 300)])
        gray = render(digit, w, h, rng, ink=0.18, paper=0.93)
        rgb = []
        for v in gray:
            rgb += [round(255 * min(1, v * 1.02)), round(255 * v), round(255 * min(1, v * 0.95 + 0.04))]
        png(f"{out}/digit-{digit}-paper.png", w, h, 3, rgb)
    for digit in (3, 7):
        # Chalk on a board: light strokes on a dark background, grayscale.
        gray = render(digit, 160, 160, rng, ink=0.9, paper=0.2)
        png(f"{out}/digit-{digit}-chalk.png", 160, 160, 1, [round(255 * v) for v in gray])
    # Black ink on a transparent canvas (what drawing apps export).
    gray = render(4, 128, 128, rng, ink=0.0, paper=1.0)
    rgba = []
    for v in gray:
        alpha = round(255 * (1 - v))
        rgba += [0, 0, 0, alpha]
    png(f"{out}/digit-4-transparent.png", 128, 128, 4, rgba)


if __name__ == "__main__":
    main()
