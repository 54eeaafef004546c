"""A horizontal bar chart as a standalone SVG string: no plotting dependency."""

from __future__ import annotations

from html import escape

WIDTH, LABEL_W, ROW_H, TOP, BOTTOM = 820, 340, 26, 40, 16
BAR_W = WIDTH - LABEL_W - 110


def bar_chart(
    title: str,
    bars: list[tuple[str, float, str]],
    *,
    unit: str,
    target: tuple[float, str] | None = None,
) -> str:
    """`bars` are (label, value, colour); `target` draws a dashed line at (value, caption)."""
    top_value = max([v for _, v, _ in bars] + ([target[0]] if target else [])) or 1.0
    height = TOP + ROW_H * len(bars) + BOTTOM

    def x(value: float) -> float:
        return LABEL_W + BAR_W * value / top_value

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for row, (label, value, colour) in enumerate(bars):
        y = TOP + row * ROW_H
        out += [
            f'<text x="{LABEL_W - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>',
            f'<rect x="{LABEL_W}" y="{y + 2}" width="{x(value) - LABEL_W:.1f}" height="{ROW_H - 6}"'
            f' fill="{colour}"/>',
            f'<text x="{x(value) + 6:.1f}" y="{y + 15}">{value:,.1f} {escape(unit)}</text>',
        ]
    if target is not None:
        tx, bottom = x(target[0]), TOP + ROW_H * len(bars)
        out += [
            f'<line x1="{tx:.1f}" y1="{TOP - 6}" x2="{tx:.1f}" y2="{bottom}" stroke="#c00" '
            'stroke-dasharray="4 3"/>',
            f'<text x="{tx + 4:.1f}" y="{TOP - 8}" fill="#c00">{escape(target[1])}</text>',
        ]
    out.append("</svg>")
    return "\n".join(out) + "\n"
