"""Charts as inline SVG, drawn on the server: no script, no external image, and readable
by a screen reader (a title, a description, and the table beside it holds the numbers)."""

from __future__ import annotations

from xml.sax.saxutils import escape

from markupsafe import Markup

WIDTH, HEIGHT, BAR_GAP, LABEL_SPACE, MAX_BAR = 640, 220, 8, 40, 72
BAR_COLOUR = "#1f5f8b"
"""Contrast 7.0:1 on white (WCAG 1.4.11 asks 3:1 for graphics)."""
MARK_COLOUR = "#6b6b6b"


def bar_chart(title: str, points: list[tuple[str, int | str]]) -> Markup:
    """One bar per (label, value); a value that is not a number (``x``: not shown) is drawn
    as a short grey stub with its mark, never as a height that would reveal it."""
    numbers = [v for _, v in points if isinstance(v, int)]
    top = max(numbers, default=0) or 1
    slot = (WIDTH - BAR_GAP) / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        x = BAR_GAP + i * slot
        width = min(max(slot - BAR_GAP, 1), MAX_BAR)
        if isinstance(value, int):
            height = (HEIGHT - LABEL_SPACE) * value / top
            colour, text = BAR_COLOUR, f"{value:,}"
        else:
            height, colour, text = 3, MARK_COLOUR, value
        y = HEIGHT - LABEL_SPACE / 2 - height
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" '
            f'fill="{colour}"><title>{escape(label)}: {escape(text)}</title></rect>'
            f'<text x="{x + width / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
            f'font-size="12" fill="#1a1a1a">{escape(text)}</text>'
            f'<text x="{x + width / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" '
            f'font-size="12" fill="#1a1a1a">{escape(label)}</text>'
        )
    summary = ", ".join(f"{label}: {value}" for label, value in points)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">'
        f"<title>{escape(title)}</title><desc>{escape(summary)}</desc>" + "".join(bars) + "</svg>"
    )
