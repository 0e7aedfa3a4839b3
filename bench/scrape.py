"""What the server's own `/metrics` says about one row: the mean batch size and the mean of
every request phase over the row (warm-up included), from two scrapes, before and after.

The phases (`maas_request_phase_seconds`) should add up to `maas_request_duration_seconds`; the
row shows both, so a wait that no phase holds is visible in the table.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

# (family, phase) → [sum, count], per model.
Totals = dict[str, dict[tuple[str, str], list[float]]]
_FAMILIES = ("maas_batch_size", "maas_request_phase_seconds", "maas_request_duration_seconds")


def scrape(base_url: str) -> Totals:
    """Sums and counts of the families above, per model (every version and worker added)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10.0).text
    totals: Totals = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    for family in text_string_to_metric_families(text):
        if family.name not in _FAMILIES:
            continue
        for sample in family.samples:
            which = (
                0 if sample.name.endswith("_sum") else 1 if sample.name.endswith("_count") else -1
            )
            if which < 0:
                continue
            key = (family.name, sample.labels.get("phase", ""))
            totals[sample.labels.get("model", "")][key][which] += sample.value
    return totals


def row_figures(before: Totals, after: Totals, model: str) -> dict[str, Any]:
    """Mean batch and mean phase / duration in ms between two scrapes, for `model`."""
    out: dict[str, Any] = {}
    was, now = before.get(model, {}), after.get(model, {})
    for key, (total, count) in now.items():
        old_total, old_count = was.get(key, (0.0, 0.0))
        n = count - old_count
        if n <= 0:
            continue
        mean = (total - old_total) / n
        family, phase = key
        if family == "maas_batch_size":
            out["mean_batch"] = round(mean, 2)
        elif family == "maas_request_duration_seconds":
            out["duration_ms"] = round(mean * 1000, 3)
        else:
            out.setdefault("phases_ms", {})[phase] = round(mean * 1000, 3)
    return out
