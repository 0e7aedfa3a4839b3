"""Reading `/metrics` the way Prometheus does: with its text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]


def parse(text: str) -> tuple[set[str], dict[Sample, float]]:
    """Family names, and every sample keyed by its name and labels."""
    families, samples = set(), {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: dict[Sample, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


CONTRACT_FAMILIES = {
    "maas_requests",
    "maas_request_duration_seconds",
    "maas_request_phase_seconds",
    "maas_queue_wait_seconds",
    "maas_inference_duration_seconds",
    "maas_batch_size",
    "maas_queue_depth",
    "maas_model_version_status",
    "maas_alias_target",
    "maas_worker_up",
    "maas_worker_restarts",
    "maas_registry_generation",
}
