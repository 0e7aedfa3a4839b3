"""The one format of every log line `maas serve` writes: the supervisor's, its gateways'
(uvicorn's own lines included) and its workers' (`maas worker` sets it up the same way).

Each process sets its logging up itself, first thing: the supervisor and the workers in the
CLI (`maas.cli.serve`), a gateway in its entry (`maas.supervision.gateway`).
"""

from __future__ import annotations

from typing import Any

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own lines in maas's one format (timestamp, logger, level, message)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"maas": {"format": LOG_FORMAT}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "maas",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
        },
    }
