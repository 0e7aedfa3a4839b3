"""docs/examples/lifecycle.sh, run as a user runs it, against a fresh `maas serve`: train,
export to ONNX, register, classify a PNG, derive int8, compare, canary, promote."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as httpclient

from support.inprocess_gateway import ADMIN, ADMIN_SECRET
from support.processes import maas_server

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "lifecycle.sh"


def test_the_lifecycle_example_runs_end_to_end(tmp_path: Path) -> None:
    env = {"MAAS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET}
    with maas_server(tmp_path, env=env, ready_path="/readyz") as url:
        bin_dir = str(Path(sys.executable).parent)  # the venv's `maas`
        run = subprocess.run(
            ["bash", str(EXAMPLE)],
            env={
                **os.environ,
                "MAAS_URL": url,
                "MAAS_API_KEY": ADMIN_SECRET,
                "PYTHON": sys.executable,
                "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                "NO_COLOR": "1",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        out = run.stdout
        assert run.returncode == 0, out + run.stderr
        accuracy = float(re.search(r"held-out accuracy (0\.\d+)", out).group(1))  # type: ignore[union-attr]
        assert accuracy > 0.85
        # Step 3 and 7: the PNG of an 8 is classified as "8", best first.
        answers = [json.loads(line) for line in out.splitlines() if line.startswith('{"result"')]
        assert len(answers) == 2
        assert [a["result"][0][0][0] for a in answers] == ["8", "8"]
        assert [a["version"] for a in answers] == [1, 2]
        assert "200 200 200 200 200" in out  # the canary's requests
        with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as client:
            derived = client.get("/admin/models/digits-onnx/versions/2").json()
            production = client.get("/admin/models/digits-onnx").json()
        assert derived["format"] == "onnx"
        assert derived["derived_from"]["version"] == 1
        assert derived["derived_from"]["method"] == "int8_dynamic"
        assert derived["metrics"]["agreement"] >= 0.98
        assert derived["size"] < client_size(production, 1)
        aliases = {a["alias"]: a["routes"] for a in production["aliases"]}
        assert aliases["production"] == [{"version": 2, "weight": 100}]
        _the_triton_client_sends_pngs(url)


def _the_triton_client_sends_pngs(url: str) -> None:
    """Triton's stock client, unchanged: the PNG files as a BYTES tensor (binary), the labels
    back through the classification extension."""
    files = [(EXAMPLE.parent / f"digit-{d}.png").read_bytes() for d in (8, 3, 5)]
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    try:
        images = httpclient.InferInput("x", [3], "BYTES")
        images.set_data_from_numpy(np.array(files, dtype=np.object_), binary_data=True)
        wanted = [httpclient.InferRequestedOutput("logits", class_count=1)]
        result = client.infer("digits-onnx", [images], outputs=wanted)
    finally:
        client.close()
    assert result.get_response()["model_version"] == "2"
    best = [row[0].decode().split(":") for row in result.as_numpy("logits")]
    # The same images in one :classify request (base64 instances): the same batch, so the
    # same labels and scores (int8 quantises activations per batch: its answers for an image
    # move a little with the images it is batched with).
    instances = [{"b64": base64.b64encode(f).decode()} for f in files]
    body = {"instances": instances}
    native = httpx.post(f"{url}/v1/models/digits-onnx:classify", json=body).json()["result"]
    assert [label for _, _, label in best] == [pairs[0][0] for pairs in native]
    assert [index for _, index, _ in best] == [pairs[0][0] for pairs in native]
    for (score, _, _), pairs in zip(best, native, strict=True):
        assert abs(float(score) - pairs[0][1]) < 1e-5
    assert best[0][2] == "8"


def client_size(model: dict, version: int) -> int:  # type: ignore[type-arg]
    return next(int(v["size"]) for v in model["versions"] if v["version"] == version)
