"""A classifier end to end against a real `maas serve`: registered with `maas models register
--labels`, then asked for classes by the stock Triton HTTP client (`class_count`, binary and
JSON, unchanged) and by the native `:classify` verb."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from support.cli import Cli, artifact_files, cli_server
from support.model_files import expected, mlp_meta, tiny_mlp

pytestmark = pytest.mark.slow

ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [3.0, 0.0, 0.0, -3.0]], np.float32)
LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One server, with `clf` (tiny_mlp, seed 0) registered through the CLI with a labels
    file and a postprocess that softmaxes."""
    with cli_server(tmp_path_factory.mktemp("classification")) as running:
        meta = mlp_meta(postprocess={"output": "y", "softmax": True, "top_k": 2})
        artifact, meta_file = artifact_files(running.home / "files", meta)
        labels = running.home / "files" / "labels.txt"
        labels.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
        answer = running(
            "models", "register", "clf", str(artifact), "--meta", str(meta_file),
            "--labels", str(labels), "--json",
        ).json()  # fmt: skip
        assert answer["status"] == "ready"
        assert answer["postprocess"]["labels"] == LABELS
        yield running


@pytest.fixture
def client(cli: Cli) -> Iterator[httpclient.InferenceServerClient]:
    triton = httpclient.InferenceServerClient(cli.url.removeprefix("http://"))
    try:
        yield triton
    finally:
        triton.close()


def _probabilities() -> np.ndarray:
    logits = np.array(expected(tiny_mlp(), ROWS.tolist()), np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _triton_strings(k: int) -> list[list[str]]:
    answer = []
    for row in _probabilities():
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        answer.append([f"{float(row[i]):f}:{i}:{LABELS[i]}" for i in order])
    return answer


def _input() -> httpclient.InferInput:
    tensor = httpclient.InferInput("x", list(ROWS.shape), "FP32")
    tensor.set_data_from_numpy(ROWS)
    return tensor


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_the_triton_client_asks_for_classes(
    client: httpclient.InferenceServerClient, binary: bool
) -> None:
    wanted = [httpclient.InferRequestedOutput("y", binary_data=binary, class_count=2)]
    result = client.infer("clf", [_input()], outputs=wanted)
    got = result.as_numpy("y")
    assert got.shape == (3, 2)
    assert result.get_output("y")["datatype"] == "BYTES"
    decoded = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in got.tolist()]
    assert decoded == _triton_strings(2)


def test_a_class_count_past_the_classes_answers_them_all(
    client: httpclient.InferenceServerClient,
) -> None:
    wanted = [httpclient.InferRequestedOutput("y", class_count=100)]
    got = client.infer("clf", [_input()], model_version="1", outputs=wanted).as_numpy("y")
    assert got.shape == (3, 3)
    assert [[v.decode() for v in row] for row in got.tolist()] == _triton_strings(3)


def test_a_bad_class_count_is_the_clients_mistake(
    client: httpclient.InferenceServerClient,
) -> None:
    wanted = [httpclient.InferRequestedOutput("y", class_count=-3)]
    with pytest.raises(InferenceServerException) as refused:
        client.infer("clf", [_input()], outputs=wanted)
    assert refused.value.status() == "400"
    assert "classification must be a positive integer" in refused.value.message()


def test_the_native_classify_verb_answers_labels_best_first(cli: Cli) -> None:
    answer = httpx.post(f"{cli.url}/v1/models/clf:classify", json={"instances": ROWS.tolist()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model"], body["version"]) == ("clf", 1)
    probabilities = _probabilities()
    for row, probs in zip(body["result"], probabilities, strict=True):
        order = sorted(range(3), key=lambda i: (-probs[i], i))[:2]
        assert [label for label, _ in row] == [LABELS[i] for i in order]
        assert [score for _, score in row] == pytest.approx([probs[i] for i in order], abs=1e-6)


def test_register_refuses_a_labels_file_that_is_not_utf8(cli: Cli) -> None:
    files = cli.home / "files"
    bad = files / "latin1.txt"
    bad.write_bytes("chat\nchien\noiseau à plumes\n".encode("latin-1"))
    run = cli(
        "models", "register", "clf", str(files / "mlp.pt"), "--meta", str(files / "meta.json"),
        "--labels", str(bad),
    )  # fmt: skip
    assert "not UTF-8 text" in run.failed(2)


def test_register_with_labels_of_the_wrong_count_says_why(cli: Cli, tmp_path: Path) -> None:
    files = cli.home / "files"
    two = tmp_path / "two.txt"
    two.write_text("cat\ndog\n")
    run = cli(
        "models", "register", "clf", str(files / "mlp.pt"), "--meta", str(files / "meta.json"),
        "--labels", str(two), "--json",
    )  # fmt: skip
    error = run.failed_json(1)
    assert error["code"] == "invalid_artifact"
    assert "postprocess has 2 labels" in error["message"]
    versions = httpx.get(f"{cli.url}/v1/models/clf").json()["model_version_status"]
    assert [v["version"] for v in versions] == ["1"]  # nothing registered
