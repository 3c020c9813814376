"""Charts drawn on the server as inline SVG (no script library): a job's emotion distribution
and a call's timeline, one lane per channel. Text is escaped by the templates (``Markup`` is
built only from numbers and escaped strings here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: Colours of the emotions AER's shipped models know; other labels take the spare colours.
EMOTION_COLOURS = {
    "neutral": "#6b7280",
    "calm": "#0f766e",
    "happy": "#ca8a04",
    "sad": "#1d4ed8",
    "angry": "#b91c1c",
    "fearful": "#6d28d9",
    "disgust": "#4d7c0f",
    "surprised": "#c2410c",
}
SPARE_COLOURS = ("#be185d", "#0369a1", "#854d0e", "#374151", "#047857", "#7c2d12")


def colour(label: str, labels: Sequence[str] = ()) -> str:
    """The colour of ``label`` (stable for the shipped emotions, by position otherwise)."""
    if label in EMOTION_COLOURS:
        return EMOTION_COLOURS[label]
    index = list(labels).index(label) if label in labels else sum(map(ord, label))
    return SPARE_COLOURS[index % len(SPARE_COLOURS)]


def distribution_svg(counts: Mapping[str, int], labels: Sequence[str]) -> Markup:
    """A horizontal bar per label (model order, then unknown labels) with its count and share."""
    order = [label for label in labels if label in counts]
    order += [label for label in counts if label not in order]
    total = sum(counts.values())
    if not total:
        return Markup("")
    bar_h, gap, left, width = 22, 6, 110, 420
    height = len(order) * (bar_h + gap)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {left + width + 120} {height}" '
        f'width="100%" aria-labelledby="dist-title"><title id="dist-title">Emotion '
        f"distribution of {total} files</title>"
    ]
    for row, label in enumerate(order):
        n, y = counts[label], row * (bar_h + gap)
        w = max(1.0, width * n / total)
        parts.append(
            f'<text x="{left - 8}" y="{y + bar_h * 0.7}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" '
            f'fill="{colour(label, labels)}"><title>{escape(label)}: {n}</title></rect>'
            f'<text x="{left + w + 6:.1f}" y="{y + bar_h * 0.7}">{n} '
            f"({100 * n / total:.0f} %)</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Lane:
    """One channel of a call's timeline."""

    channel: int
    name: str
    segments: list[dict]  # the API's segment JSON (api.web.serializers.segment_row)


def timeline_svg(lanes: Sequence[Lane], duration_s: float, labels: Sequence[str]) -> Markup:
    """One lane per channel; a segment is a bar coloured by its (corrected) label, as opaque as
    it is confident, dashed when uncertain. Each bar is a button that plays its stretch."""
    duration_s = max(duration_s, max((s["end_s"] for ln in lanes for s in ln.segments), default=0))
    if not lanes or duration_s <= 0:
        return Markup("")
    lane_h, gap, left, width = 34, 10, 90, 900
    height = len(lanes) * (lane_h + gap) + 18
    scale = width / duration_s
    parts = [
        f'<svg class="timeline" role="group" viewBox="0 0 {left + width + 10} {height}" '
        f'width="100%" aria-label="Timeline of {len(lanes)} channel(s), {duration_s:.1f} s">'
    ]
    for row, lane in enumerate(lanes):
        y = row * (lane_h + gap)
        parts.append(
            f'<text x="{left - 8}" y="{y + lane_h * 0.65}" text-anchor="end">'
            f"{escape(lane.name)}</text>"
            f'<rect class="lane" x="{left}" y="{y}" width="{width}" height="{lane_h}"/>'
        )
        for seg in lane.segments:
            parts.append(_segment_bar(seg, left, y, lane_h, scale, labels))
    for tick in _ticks(duration_s):
        x = left + tick * scale
        parts.append(f'<text class="tick" x="{x:.1f}" y="{height - 4}">{tick:g} s</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _segment_bar(seg: dict, left: float, y: float, h: float, scale: float, labels) -> str:
    label = seg["corrected_label"] or seg["label"]
    x, w = left + seg["start_s"] * scale, max(2.0, (seg["end_s"] - seg["start_s"]) * scale)
    opacity = 0.35 + 0.65 * max(0.0, min(1.0, seg["confidence"]))
    name = (
        f"{seg['channel_name']} {seg['start_s']:.1f}-{seg['end_s']:.1f} s: {label}, "
        f"confidence {seg['confidence']:.2f}" + (", uncertain" if seg["uncertain"] else "")
    )
    dashed = ' class="seg uncertain"' if seg["uncertain"] else ' class="seg"'
    return (
        f'<rect{dashed} tabindex="0" role="button" data-segment="{seg["id"]}" '
        f'data-start="{seg["start_s"]}" data-end="{seg["end_s"]}" x="{x:.1f}" y="{y + 2}" '
        f'width="{w:.1f}" height="{h - 4}" fill="{colour(label, labels)}" '
        f'fill-opacity="{opacity:.2f}" aria-label="{escape(name)}">'
        f"<title>{escape(name)}</title></rect>"
    )


def _ticks(duration_s: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration_s / s <= 10), 900)
    return [t * step for t in range(int(duration_s // step) + 1)]
