"""ONNX versions on ONNX Runtime: the same answers as the torch runtime from the same weights,
the session's thread settings, golden checks, a graph that disagrees with meta, sealed
artifacts, the device, a real worker process, and onnxruntime imported only when needed."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from maas.errors import InvalidInput, ModelLoadError
from maas.store.sealing import ArtifactKey
from maas.types import ArtifactFormat, GoldenExample, LoadSpec, TensorSpec, VersionKey
from maas.worker.onnx_runtime import CUDA_PROVIDER, OnnxModel
from maas.worker.runtime import load_model
from support.model_files import IN, OUT, expected, onnx_bytes, tiny_mlp, torchscript_bytes
from support.worker_process import connected_pool, wait_healthy, worker_process

X = TensorSpec("x", "float32", (IN,))
Y = TensorSpec("y", "float32", (OUT,))
ROWS = np.random.default_rng(0).standard_normal((5, IN)).astype(np.float32)
HAS_CUDA = torch.cuda.is_available() and CUDA_PROVIDER in onnxruntime.get_available_providers()


def _spec(tmp_path: Path, artifact: bytes, fmt: str = "onnx", **changes: object) -> LoadSpec:
    path = tmp_path / f"model.{fmt}"
    path.write_bytes(artifact)
    spec = LoadSpec(
        key=VersionKey("mlp", 1),
        path=str(path),
        sha256=hashlib.sha256(artifact).hexdigest(),
        format=ArtifactFormat(fmt),
        inputs=(X,),
        outputs=(Y,),
        device="cpu",
        max_batch_size=8,
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _onnx(tmp_path: Path, threads: int | None = 1, **changes: object) -> OnnxModel:
    model = load_model(_spec(tmp_path, onnx_bytes(tiny_mlp()), **changes), threads=threads)
    assert isinstance(model, OnnxModel)
    return model


def test_the_onnx_twin_answers_as_the_torchscript_model(tmp_path: Path) -> None:
    module = tiny_mlp()
    onnx_model = _onnx(tmp_path)
    script = load_model(_spec(tmp_path, torchscript_bytes(module), "torchscript"))
    assert onnx_model.device == "cpu"
    assert onnx_model.warmup_batch_s > 0
    for batch in (ROWS[:1], ROWS):
        (got,) = onnx_model.run([batch])
        (want,) = script.run([batch])
        assert got.dtype == np.float32
        assert got.shape == (len(batch), OUT)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        onnx_model.run([ROWS])[0], expected(module, ROWS.tolist()), atol=1e-5, rtol=0
    )
    # Inputs arrive as the batcher gives them: other dtypes are cast, read-only views read.
    view = np.frombuffer(ROWS.astype(np.float64).tobytes(), dtype=np.float64).reshape(5, IN)
    np.testing.assert_allclose(onnx_model.run([view])[0], onnx_model.run([ROWS])[0], atol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_the_session_runs_on_the_workers_threads_without_spinning(
    tmp_path: Path, threads: int
) -> None:
    options = _onnx(tmp_path, threads=threads).session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert options.execution_mode == onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"


def test_unset_threads_are_the_number_torch_runs_on(tmp_path: Path) -> None:
    options = _onnx(tmp_path, threads=None).session.get_session_options()
    assert options.intra_op_num_threads == torch.get_num_threads()


def test_golden_examples_are_replayed(tmp_path: Path) -> None:
    rows = ROWS[:2].tolist()
    right = GoldenExample(inputs=rows, outputs=expected(tiny_mlp(), rows))
    _onnx(tmp_path, golden=(right,))
    wrong = GoldenExample(inputs=rows, outputs=[[9.0] * OUT] * 2)
    with pytest.raises(ModelLoadError) as failed:
        _onnx(tmp_path, golden=(right, wrong))
    assert failed.value.message == (
        "golden example 1, instance 0: output differs from the expected values beyond atol=0.0001"
    )


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"outputs": (TensorSpec("logits", "float32", (OUT,)),)},
            "meta declares output 'logits' but the ONNX graph has no output of that name; its "
            "outputs are 'y'",
        ),
        (
            {"outputs": (TensorSpec("y", "float32", (7,)),)},
            "output 'y' has shape [batch, 3] in the ONNX graph, meta declares [7] per instance: "
            "axis 1 is 3 in the graph, 7 in meta",
        ),
        (
            {"outputs": (TensorSpec("y", "float16", (OUT,)),)},
            "output 'y' is float32 in the ONNX graph, meta declares float16",
        ),
        (
            {"inputs": (TensorSpec("x", "float32", (IN, 1)),)},
            "input 'x' has 2 axes in the ONNX graph ([batch, 4], the batch axis first), meta "
            "declares [4, 1] per instance, which makes 3 with the batch axis",
        ),
    ],
    ids=["output_name", "output_shape", "output_dtype", "input_rank"],
)
def test_a_graph_that_disagrees_with_meta_fails_the_load_saying_which(
    tmp_path: Path, changes: dict[str, object], says: str
) -> None:
    with pytest.raises(ModelLoadError) as failed:
        _onnx(tmp_path, **changes)
    assert failed.value.message == says


def test_what_the_model_refuses_at_run_time_is_invalid_input(tmp_path: Path) -> None:
    model = _onnx(tmp_path)
    with pytest.raises(InvalidInput) as refused:
        model.run([np.zeros((2, IN + 3), np.float32)])
    assert refused.value.message == (
        "the model rejected the input: Got invalid dimensions for input: x for the following "
        "indices index: 1 Got: 7 Expected: 4 Please fix either the inputs/outputs or the model."
    )


def test_bytes_that_are_not_onnx_fail_the_load_with_the_cause(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as failed:
        load_model(_spec(tmp_path, b"not an onnx model"))
    assert failed.value.message == (
        "cannot load the onnx artifact: InvalidProtobuf: Failed to load model because protobuf "
        "parsing failed."
    )


def test_a_sealed_artifact_loads(tmp_path: Path) -> None:
    key = ArtifactKey.parse(ArtifactKey.generate())
    plain = onnx_bytes(tiny_mlp())
    sealed = io.BytesIO()
    key.seal(io.BytesIO(plain), sealed)
    spec = _spec(tmp_path, plain)
    Path(spec.path).write_bytes(sealed.getvalue())  # the store's file; sha256 is the plain one
    model = load_model(spec, key, threads=1)
    np.testing.assert_allclose(
        model.run([ROWS])[0], expected(tiny_mlp(), ROWS.tolist()), atol=1e-5, rtol=0
    )
    with pytest.raises(ModelLoadError):
        load_model(spec)  # without the key it does not open


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_fails_the_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as failed:
        _onnx(tmp_path, device="cuda")
    assert failed.value.message == "device cuda requested but CUDA is not available"
    assert _onnx(tmp_path, device="auto").device == "cpu"


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and onnxruntime's CUDA provider")
def test_a_cuda_device_runs_on_the_cuda_provider_with_the_same_answers(tmp_path: Path) -> None:
    cpu = _onnx(tmp_path)
    for device in ("cuda", "cuda:0", "auto"):
        gpu = _onnx(tmp_path, device=device)
        assert gpu.device == "cuda:0", device
        assert gpu.session.get_providers()[0] == CUDA_PROVIDER
        np.testing.assert_allclose(gpu.run([ROWS])[0], cpu.run([ROWS])[0], atol=1e-4)


async def test_a_worker_process_serves_an_onnx_version(tmp_path: Path) -> None:
    module = tiny_mlp(seed=4)
    spec = _spec(tmp_path, onnx_bytes(module), device="auto", max_delay_ms=20)
    endpoint = f"ipc://{tmp_path}/w.sock"
    with worker_process(endpoint):
        async with connected_pool([endpoint]) as pool:
            await wait_healthy(pool)
            await pool.load(spec)
            batches = [ROWS[: 1 + i % 5] for i in range(40)]
            results = await asyncio.gather(*(pool.infer(spec.key, [x]) for x in batches))
            for x, (y,) in zip(batches, results, strict=True):
                np.testing.assert_allclose(y, expected(module, x.tolist()), atol=1e-5, rtol=0)


def test_onnxruntime_is_imported_only_when_an_onnx_version_loads() -> None:
    script = (
        "import sys\n"
        "import maas.worker.main, maas.worker.loop, maas.worker.loading, maas.worker.runtime\n"
        "assert 'onnxruntime' not in sys.modules, 'imported before any load'\n"
        "import maas.app\n"
        "assert 'onnxruntime' not in sys.modules, 'imported by the gateway'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
