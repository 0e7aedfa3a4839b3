"""The bare FastAPI ceiling: the inference route's shape with no work behind it.

It reads the body (`await request.body()`) and answers a constant, pre-encoded JSON prediction,
so what it measures is uvicorn + FastAPI routing + HTTP framing and nothing of maas:

    uvicorn bench.bare_app:app --loop uvloop --http httptools --no-access-log [--workers G]
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

_REPLY = b'{"predictions":[[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1]],"model":"bare","version":1}'

app = FastAPI(title="bare", openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/v1/models/{name}:predict")
async def predict(name: str, request: Request) -> Response:
    await request.body()
    return Response(_REPLY, media_type="application/json")


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")
