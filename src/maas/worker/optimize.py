"""The int8 child process: `python -m maas.worker.optimize JOB.json` (or the job on stdin).

A gateway never quantises on its event loop or in its own process: it writes a job, starts this
module in a child process and reads the result back (`maas.control.optimizing`). The job names
the parent's plain ONNX file, where the derived file goes, the parent's signature, the inputs to
measure on (the parent's golden examples and the operator's holdout, with or without labels)
and the thread count. The child

- quantises the parent with ONNX Runtime's dynamic quantisation (int8 weights, activations
  quantised at run time: `onnxruntime.quantization.quantize_dynamic`, QInt8);
- runs parent and child side by side, in sessions configured as a worker configures them (one
  inter-op thread, sequential execution, no spinning), on every measured instance: top-1
  agreement (argmax over the last axis of the compared output, every position counted), the
  largest absolute difference of that output, and with labels each one's accuracy;
- times both at batch 1 and batch 32 (median milliseconds; a model whose graph fixes its batch
  axis is timed at that size only) and reports both files' sizes;
- answers the derived version's own golden examples: the parent's inputs with the int8
  model's outputs, so its load checks that the file served is the file measured.

The result (a JSON object) goes to the job's `result` path, else to stdout:
`{"ok": true, "metrics": {...}, "golden": [...]}`, or `{"ok": false, "error": {"code",
"message"}}` with code `unsupported` (ONNX Runtime cannot quantise or run this model: the
gateway answers 422 with the message) or `invalid_job`. Exit status 0 with a result, 1 with an
error result, 2 when the job cannot be read.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.checks.arrays import InstanceGroup, group_instances
from maas.errors import InvalidInput
from maas.types import TensorSpec
from maas.worker.onnx_runtime import session_options

METHODS = ("int8_dynamic",)
LATENCY_BATCHES = (1, 32)
# Ops whose presence in the quantised graph shows that something was quantised.
_QUANTISED_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "DynamicQuantizeMatMul",
        "MatMulInteger",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "DequantizeLinear",
        "QAttention",
        "DynamicQuantizeLSTM",
        "QGemm",
    }
)
_TIMING_RUNS, _TIMING_BUDGET_S, _WARM_RUNS = 30, 1.5, 3


class OptimizeFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Job:
    parent: Path
    output: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    compare: str
    golden: list[dict[str, Any]]
    holdout: list[Any]
    labels: list[int] | None
    max_batch_size: int
    threads: int
    method: str = "int8_dynamic"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        outputs = tuple(TensorSpec.from_json(s) for s in data["outputs"])
        labels = data.get("labels")
        return cls(
            parent=Path(data["parent"]),
            output=Path(data["output"]),
            inputs=tuple(TensorSpec.from_json(s) for s in data["inputs"]),
            outputs=outputs,
            compare=str(data.get("compare") or outputs[0].name),
            golden=list(data.get("golden") or []),
            holdout=list(data.get("holdout") or []),
            labels=None if labels is None else [int(label) for label in labels],
            max_batch_size=max(1, int(data.get("max_batch_size", 32))),
            threads=max(1, int(data.get("threads", 1))),
            method=str(data.get("method", "int8_dynamic")),
        )


def quantise(job: Job) -> None:
    """Write the int8 twin of `job.parent` to `job.output`; OptimizeFailed when ONNX Runtime
    cannot, or when nothing in the graph is quantisable."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if job.method not in METHODS:
        raise OptimizeFailed("invalid_job", f"unknown method {job.method!r} (known: {METHODS})")
    try:
        quantize_dynamic(job.parent, job.output, weight_type=QuantType.QInt8)
    except Exception as exc:  # onnxruntime raises many kinds for a graph it cannot handle
        raise OptimizeFailed(
            "unsupported",
            f"ONNX Runtime cannot quantise this model: {type(exc).__name__}: {exc}",
        ) from None
    ops = {node.op_type for node in onnx.load(str(job.output), load_external_data=False).graph.node}
    if not ops & _QUANTISED_OPS:
        raise OptimizeFailed(
            "unsupported",
            "nothing in this graph is quantised by dynamic int8 quantisation (it applies to "
            "the weights of MatMul, Gemm, Conv, Gather, LSTM and Attention operators); the int8 "
            "version would be the parent again",
        )


def _session(path: Path, threads: int, which: str) -> Any:
    """A CPU session configured as the worker configures its own (`threads` intra-op threads,
    one inter-op thread, sequential, no spinning)."""
    import onnxruntime as ort

    options = session_options(threads)
    options.log_severity_level = 3  # errors only: the child's stderr is the gateway's message
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise OptimizeFailed(
            "unsupported", f"ONNX Runtime cannot open the {which} model: {exc}"
        ) from None


def _chunks(group: InstanceGroup, size: int) -> Iterator[tuple[list[int], list[Any]]]:
    for start in range(0, len(group.positions), size):
        end = start + size
        yield group.positions[start:end], [a[start:end] for a in group.arrays]


def _run(session: Any, names: Sequence[str], inputs: Sequence[TensorSpec], arrays: Any) -> Any:
    feeds = {spec.name: array for spec, array in zip(inputs, arrays, strict=True)}
    try:
        return session.run(list(names), feeds)
    except Exception as exc:
        raise OptimizeFailed("unsupported", f"a forward failed: {exc}") from None


def _groups(job: Job, instances: list[Any], what: str) -> list[InstanceGroup]:
    try:
        return group_instances(instances, job.inputs)
    except InvalidInput as exc:
        raise OptimizeFailed("invalid_job", f"{what}: {exc.message}") from None


@dataclass
class Comparison:
    agreeing: int = 0
    positions: int = 0
    max_abs_diff: float = 0.0
    finite: bool = True
    parent_correct: int = 0
    child_correct: int = 0


def compare(job: Job, parent: Any, child: Any, instances: list[Any]) -> Comparison:
    """Parent and child on every instance (golden inputs, then the holdout, whose labels are
    aligned with the last `len(labels)` instances)."""
    found = Comparison()
    first_labelled = len(instances) - len(job.labels or [])
    for group in _groups(job, instances, "the measured instances"):
        for positions, arrays in _chunks(group, job.max_batch_size):
            (want,) = _run(parent, [job.compare], job.inputs, arrays)
            (got,) = _run(child, [job.compare], job.inputs, arrays)
            if want.shape != got.shape:
                raise OptimizeFailed(
                    "unsupported",
                    f"the int8 model's output '{job.compare}' has shape {list(got.shape)}, "
                    f"the parent's {list(want.shape)}",
                )
            if want.size == 0:
                continue
            diff = np.abs(want.astype(np.float64) - got.astype(np.float64))
            found.finite = found.finite and bool(np.isfinite(diff).all())
            found.max_abs_diff = max(found.max_abs_diff, float(np.nanmax(diff, initial=0.0)))
            top_want, top_got = np.argmax(want, axis=-1), np.argmax(got, axis=-1)
            found.agreeing += int((top_want == top_got).sum())
            found.positions += int(top_want.size)
            if job.labels is not None:
                _count_correct(job, found, positions, top_want, top_got, first_labelled)
    return found


def _count_correct(
    job: Job, found: Comparison, positions: list[int], want: Any, got: Any, first: int
) -> None:
    assert job.labels is not None
    for row, position in enumerate(positions):
        if position < first:
            continue
        label = job.labels[position - first]
        if want[row].size != 1:
            raise OptimizeFailed(
                "invalid_job",
                f"labels need one class per instance; output '{job.compare}' has "
                f"{want[row].size} argmax positions per instance",
            )
        found.parent_correct += int(int(want[row].reshape(-1)[0]) == label)
        found.child_correct += int(int(got[row].reshape(-1)[0]) == label)


def _fixed_batch(session: Any) -> int | None:
    """The batch size the graph fixes on its first input's leading axis, if it fixes one."""
    shape = session.get_inputs()[0].shape
    return shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None


def latency_ms(session: Any, job: Job, sample: list[Any], batch: int) -> float | None:
    """Median milliseconds of a forward of `batch` copies of `sample` (one instance's arrays);
    None when the graph fixes another batch size or refuses this one."""
    fixed = _fixed_batch(session)
    if fixed is not None and fixed != batch:
        return None
    arrays = [np.repeat(a[:1], batch, axis=0) for a in sample]
    feeds = {spec.name: array for spec, array in zip(job.inputs, arrays, strict=True)}
    names = [job.compare]
    try:
        for _ in range(_WARM_RUNS):
            session.run(names, feeds)
        times: list[float] = []
        budget_end = time.perf_counter() + _TIMING_BUDGET_S
        while len(times) < _TIMING_RUNS and (len(times) < 5 or time.perf_counter() < budget_end):
            started = time.perf_counter()
            session.run(names, feeds)
            times.append((time.perf_counter() - started) * 1000)
    except Exception:
        return None
    return round(statistics.median(times), 4)


def child_golden(job: Job, child: Any) -> list[dict[str, Any]]:
    """The parent's golden inputs with the int8 model's own outputs (and the parent's atol)."""
    names = [spec.name for spec in job.outputs]
    examples = []
    for index, example in enumerate(job.golden):
        instances = list(example["inputs"])
        answers: list[Any] = [None] * len(instances)
        for group in _groups(job, instances, f"golden example {index}"):
            for positions, arrays in _chunks(group, job.max_batch_size):
                outputs = _run(child, names, job.inputs, arrays)
                for row, position in enumerate(positions):
                    values = [np.asarray(out[row]).tolist() for out in outputs]
                    answers[position] = values[0] if len(values) == 1 else values
        examples.append(
            {"inputs": instances, "outputs": answers, "atol": example.get("atol", 1e-4)}
        )
    return examples


def optimize(job: Job) -> dict[str, Any]:
    """Quantise, measure and answer the result object (OptimizeFailed on the way)."""
    golden_instances = [i for example in job.golden for i in example["inputs"]]
    instances = golden_instances + job.holdout
    if not instances:
        raise OptimizeFailed("invalid_job", "no instances to measure agreement on")
    if job.labels is not None and len(job.labels) != len(job.holdout):
        raise OptimizeFailed("invalid_job", "labels and holdout instances differ in count")
    quantise(job)
    parent = _session(job.parent, job.threads, "parent")
    child = _session(job.output, job.threads, "int8")
    found = compare(job, parent, child, instances)
    sample = _groups(job, instances[:1], "the timing sample")[0].arrays
    metrics: dict[str, Any] = {
        "agreement": round(found.agreeing / found.positions, 6) if found.positions else None,
        "max_abs_diff": found.max_abs_diff if found.finite else None,
        "latency_ms_b1": latency_ms(child, job, sample, LATENCY_BATCHES[0]),
        "latency_ms_b32": latency_ms(child, job, sample, LATENCY_BATCHES[1]),
        "parent_latency_ms_b1": latency_ms(parent, job, sample, LATENCY_BATCHES[0]),
        "parent_latency_ms_b32": latency_ms(parent, job, sample, LATENCY_BATCHES[1]),
        "size_bytes": os.path.getsize(job.output),
        "parent_size_bytes": os.path.getsize(job.parent),
        "holdout_count": len(job.holdout),
        "golden_count": len(golden_instances),
    }
    if job.labels is not None and job.labels:
        metrics["accuracy"] = round(found.child_correct / len(job.labels), 6)
        metrics["parent_accuracy"] = round(found.parent_correct / len(job.labels), 6)
    return {"ok": True, "metrics": metrics, "golden": child_golden(job, child)}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)  # quantize_dynamic's advice
    try:
        raw = json.loads(Path(args[0]).read_text() if args and args[0] != "-" else sys.stdin.read())
        job = Job.from_json(raw)
        result_path = Path(raw["result"]) if raw.get("result") else None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        print(f"cannot read the optimize job: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        result = optimize(job)
        code = 0
    except OptimizeFailed as exc:
        result, code = {"ok": False, "error": {"code": exc.code, "message": exc.message}}, 1
    text = json.dumps(result)
    if result_path is None:
        print(text)
    else:
        result_path.write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
