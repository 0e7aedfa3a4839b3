"""Schemathesis hooks for tests/fuzz: the campaign may create and revoke keys, but not the one
it authenticates with (that would end the campaign at its first DELETE /admin/keys/{id}, not
test anything more). MAAS_FUZZ_KEY_ID names it."""

from __future__ import annotations

import os
from typing import Any

import schemathesis

_OWN_KEY = int(os.environ.get("MAAS_FUZZ_KEY_ID", "0"))


@schemathesis.hook
def filter_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> bool:
    return not (path_parameters and str(path_parameters.get("key_id")) == str(_OWN_KEY))


# The 5xx answers the contract gives, by the shape of their body: a status or readiness route
# saying "ready": false, and these error codes (the v2 routes' errors are plain strings).
_CONTRACT_503 = {"unavailable", "registry_unavailable"}


@schemathesis.check
def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """Any 5xx fails but those the contract names: 503 for not ready or no ready worker,
    504 only when the case set a deadline."""
    status = response.status_code
    if status < 500:
        return None
    if status == 504 and any(
        name.lower() == "x-request-timeout-ms" for name in (case.headers or {})
    ):
        return None
    if status == 503:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("ready") is False:
            return None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("code") in _CONTRACT_503:
            return None
        if isinstance(error, str) and "no ready worker" in error:
            return None
    raise AssertionError(f"server error {status}: {response.text[:300]}")
