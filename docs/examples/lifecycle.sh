#!/usr/bin/env bash
# A model's whole life on maas, as a user runs it: train -> export to ONNX -> register -> infer
# -> derive an int8 version -> compare -> canary -> promote. Run it against a serving maas:
#
#     make serve                                   # in one terminal
#     bash docs/examples/lifecycle.sh              # in another (MAAS_URL, MAAS_API_KEY as usual)
#
# tests/system/test_lifecycle_example.py runs this very file against a fresh `maas serve`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MAAS_URL="${MAAS_URL:-http://127.0.0.1:8000}"
PYTHON="${PYTHON:-python}"
MODEL="${MODEL:-digits-onnx}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== 1. train and export to ONNX"
"$PYTHON" "$here/train_digits_onnx.py" "$work"

echo "== 2. register it (the first ready version of a model becomes its production)"
maas models register "$MODEL" "$work/digits.onnx" --meta "$work/digits.meta.json"

echo "== 3. infer: a PNG in, a label out"
curl -sS -F image=@"$here/digit-8.png" "$MAAS_URL/v1/models/$MODEL:classify"
echo

echo "== 4. derive an int8 version, measured against its parent on the held-out rows"
maas models optimize "$MODEL@1" --int8 --min-agreement 0.98 --holdout "$work/holdout.json"

echo "== 5. compare: the derived version, its parent and the figures it was measured with"
maas models show "$MODEL@2"

echo "== 6. canary: 10 % of production's traffic to the int8 version"
maas models canary "$MODEL@2" --weight 10
for _ in 1 2 3 4 5; do
  curl -sS -o /dev/null -w "%{http_code} " -F image=@"$here/digit-3.png" "$MAAS_URL/v1/models/$MODEL:classify"
done
echo

echo "== 7. promote it: production is the int8 version alone"
maas models promote "$MODEL@2"
curl -sS -F image=@"$here/digit-8.png" "$MAAS_URL/v1/models/$MODEL:classify"
echo
maas models history "$MODEL"
