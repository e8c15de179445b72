#!/usr/bin/env python3
"""Grouped bar charts as PNG, Python 3 standard library only (zlib + struct, no matplotlib/PIL).

  tests/bench/plot_png.py CHART.json OUT.png

CHART.json is one chart or several stacked as panels of one picture:
  {"title": "...", "ylabel": "tokens/s", "groups": ["1", "4"],
   "series": [{"name": "K=4", "values": [10.5, 20]}, {"name": "K=0", "values": [8, null]}],
   "note": "optional line under the chart"}
  {"width": 960, "panels": [CHART, CHART, ...]}
A null value draws no bar. Text is drawn with a built-in 5x7 bitmap font (printable ASCII).
"""
import json
import math
import struct
import sys
import zlib

# 5x7 font, ASCII 0x20..0x7E: five column bytes per glyph, bit 0 is the top row.
_FONT_HEX = (
    "0000000000 00005f0000 0007000700 147f147f14 242a7f2a12 2313086462 3649552250 0005030000"
    " 001c224100 0041221c00 082a1c2a08 08083e0808 0050300000 0808080808 0060600000 2010080402"
    " 3e5149453e 00427f4000 4261514946 2141454b31 1814127f10 2745454539 3c4a494930 0171090503"
    " 3649494936 064949291e 0036360000 0056360000 0008142241 1414141414 4122140800 0201510906"
    " 3249794136 7e1111117e 7f49494936 3e41414122 7f4141221c 7f49494941 7f09090101 3e41415132"
    " 7f0808087f 00417f4100 2040413f01 7f08142241 7f40404040 7f0204027f 7f0408107f 3e4141413e"
    " 7f09090906 3e4151215e 7f09192946 4649494931 01017f0101 3f4040403f 1f2040201f 7f2018207f"
    " 6314081463 0304780403 6151494543 00007f4141 0204081020 41417f0000 0402010204 4040404040"
    " 0001020400 2054545478 7f48444438 3844444420 384444487f 3854545418 087e090102 081454543c"
    " 7f08040478 00447d4000 2040443d00 007f102844 00417f4000 7c04180478 7c08040478 3844444438"
    " 7c14141408 081414187c 7c08040408 4854545420 043f444020 3c4040207c 1c2040201c 3c4030403c"
    " 4428102844 0c5050503c 4464544c44 0008364100 00007f0000 0041360800 0201020402"
)
FONT = {chr(0x20 + i): list(bytes.fromhex(g)) for i, g in enumerate(_FONT_HEX.split())}
# Lower-case letters with descenders, redrawn into rows 2..8 (rows 7 and 8 below the baseline).
_DESCENDERS = {
    "g": [".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."],
    "j": ["..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."],
    "p": ["####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."],
    "q": [".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"],
    "y": ["#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."],
}
for _ch, _rows in _DESCENDERS.items():
    FONT[_ch] = [sum(1 << (r + 2) for r, line in enumerate(_rows) if line[c] == "#") for c in range(5)]
FONT["j"][3] |= 1  # the dot
ROWS = 9  # glyph cell height: 7 rows and 2 of descender

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
GRID, AXIS, TEXT = (225, 225, 225), (60, 60, 60), (30, 30, 30)
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127)]


class Canvas:
    def __init__(self, width, height, color=WHITE):
        self.w, self.h = width, height
        self.px = bytearray(bytes(color) * (width * height))

    def rect(self, x0, y0, x1, y1, color):
        """Fills [x0, x1) x [y0, y1), clipped."""
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        y0, y1 = max(0, int(y0)), min(self.h, int(y1))
        if x0 >= x1:
            return
        row = bytes(color) * (x1 - x0)
        for y in range(y0, y1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x, y, s, scale=2, color=TEXT, vertical=False):
        """Draws s with its top-left corner at (x, y); vertical: rotated 90 degrees, bottom to top."""
        for n, ch in enumerate(s):
            glyph = FONT.get(ch, FONT["?"])
            for col, bits in enumerate(glyph):
                for row in range(ROWS):
                    if not bits >> row & 1:
                        continue
                    if vertical:  # reading direction goes up; glyph top faces left
                        px = x + row * scale
                        py = y + text_width(s, scale) - (n * 6 + col + 1) * scale
                    else:
                        px, py = x + (n * 6 + col) * scale, y + row * scale
                    self.rect(px, py, px + scale, py + scale, color)

    def png(self):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3])
                       for y in range(self.h))
        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data +
                    struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
        return (b"\x89PNG\r\n\x1a\n" +
                chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def text_width(s, scale):
    return max(0, len(s) * 6 * scale - scale)


def fmt(v):
    if v is None:
        return ""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def tick_format(ticks):
    """Labels with as many decimals as the step needs (0.25 -> 2, 2.5 -> 1, 50 -> 0)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    places = next(p for p in range(4) if p == 3 or abs(round(step, p) - step) < 1e-9 * max(1.0, step))
    return [f"{t:,.{places}f}" for t in ticks]


def nice_ticks(top, count=5):
    """Round tick step (1, 2, 2.5, 5 x 10^n) covering [0, top]."""
    if not top or top <= 0:
        top = 1.0
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def wrap(label, width, scale):
    """Splits label on spaces into lines no wider than width (a long word stays whole)."""
    lines, cur = [], ""
    for word in label.split():
        cand = f"{cur} {word}" if cur else word
        if cur and text_width(cand, scale) > width:
            lines.append(cur)
            cur = word
        else:
            cur = cand
    return lines + ([cur] if cur else [])


def draw_panel(cv, chart, x0, y0, w, h):
    title = chart.get("title", "")
    groups = [str(g) for g in chart.get("groups", [])]
    series = chart.get("series", [])
    ylabel = chart.get("ylabel", "")
    note = chart.get("note", "")
    values = [v for s in series for v in s["values"] if v is not None]
    ticks = nice_ticks(max(values) * 1.12 if values else 1.0)
    top = ticks[-1]

    # Title, then the legend on its own row(s) under it.
    tscale = 3 if text_width(title, 3) <= w - 20 else 2
    cv.text(x0 + (w - text_width(title, tscale)) // 2, y0 + 8, title, tscale, BLACK)
    lx, ly = x0 + 90, y0 + 40
    for i, s in enumerate(series):
        item = text_width(s["name"], 2) + 34
        if lx + item > x0 + w - 10:
            lx, ly = x0 + 90, ly + 22
        color = PALETTE[i % len(PALETTE)]
        cv.rect(lx, ly, lx + 16, ly + 14, color)
        cv.text(lx + 22, ly, s["name"], 2)
        lx += item + 10

    # Plot area; tick labels must fit left of it.
    tick_labels = tick_format(ticks)
    left = x0 + 30 + max(text_width(t, 2) for t in tick_labels)
    right = x0 + w - 20
    plot_top = ly + 34
    group_w = (right - left) / max(1, len(groups))
    label_scale = 2 if all(text_width(word, 2) <= group_w - 8 for g in groups for word in g.split()) else 1
    label_lines = max([len(wrap(g, group_w - 8, label_scale)) for g in groups] or [1])
    bottom = y0 + h - 18 - label_lines * 10 * label_scale - (18 if note else 0)
    if bottom - plot_top < 40:
        bottom = plot_top + 40

    def ypos(v):
        return bottom - (bottom - plot_top) * (v / top)

    for t, label in zip(ticks, tick_labels):
        y = round(ypos(t))
        cv.rect(left, y, right, y + 1, GRID)
        cv.rect(left - 5, y, left, y + 1, AXIS)
        cv.text(left - 8 - text_width(label, 2), y - 7, label, 2)
    if ylabel:
        vw = text_width(ylabel, 2)
        cv.text(x0 + 2, max(plot_top, (plot_top + bottom) // 2 - vw // 2), ylabel, 2, vertical=True)

    nser = max(1, len(series))
    bar_w = max(2, int(group_w * 0.8 / nser))
    for gi, g in enumerate(groups):
        gx = left + gi * group_w
        bx = gx + (group_w - bar_w * nser) / 2
        for si, s in enumerate(series):
            v = s["values"][gi] if gi < len(s["values"]) else None
            if v is None:
                continue
            x = round(bx + si * bar_w)
            y = round(ypos(max(0.0, v)))
            cv.rect(x + 1, y, x + bar_w - 1, bottom, PALETTE[si % len(PALETTE)])
            label = fmt(v)
            for scale in (2, 1):
                if text_width(label, scale) <= bar_w + 4:
                    cv.text(x + (bar_w - text_width(label, scale)) // 2, y - 8 * scale - 2, label, scale)
                    break
        for li, line in enumerate(wrap(g, group_w - 8, label_scale)):
            cv.text(round(gx + (group_w - text_width(line, label_scale)) / 2),
                    bottom + 8 + li * 10 * label_scale, line, label_scale)
    cv.rect(left, plot_top, left + 1, bottom + 1, AXIS)
    cv.rect(left, bottom, right, bottom + 1, AXIS)
    if note:
        cv.text(left, y0 + h - 16, note, 1, TEXT)


def render(spec):
    panels = spec["panels"] if "panels" in spec else [spec]
    width = int(spec.get("width", 960))
    heights = [int(p.get("height", 420)) for p in panels]
    cv = Canvas(width, sum(heights) + 10 * (len(panels) - 1))
    y = 0
    for panel, h in zip(panels, heights):
        draw_panel(cv, panel, 0, y, width, h)
        y += h
        if y < cv.h:
            cv.rect(20, y + 4, width - 20, y + 6, GRID)  # separator between panels
        y += 10
    return cv.png()


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    with open(argv[2], "wb") as f:
        f.write(render(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
