"""Classical models through the gateway's V2 front door: throughput and p50/p99 latency of
``POST /v2/models/{name}/infer`` at 1 and 32 connections, for an iris-sized scikit-learn model
and a 1 MB-input ONNX model run in the gateway's process (built here, in a temporary folder).

    .venv/bin/python bench/v2.py [--seconds 5] [--direct URL/v2/models/NAME/infer]

``--direct`` also measures a model server called straight (MLServer, Triton, KServe: any V2
server, e.g. ``mlserver start`` of the same iris model), with the same iris body, to compare the
gateway's in-process path with calling a model server directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import onnx
import orjson
import skops.io
from onnx import TensorProto, helper
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

KEY = "lg-bench-v2-0123456789abcdef"
WIDE = 262_144  # FP32 features: 1 MB a row


def build(folder: Path) -> None:
    x, y = load_iris(return_X_y=True)
    skops.io.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "iris.skops")
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "wide",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
                              initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, folder / "wide.onnx")
    (folder / "lockgate.yaml").write_text(f"""
storage: sqlite:///{folder}/bench.db
telemetry: {{access_log: false}}
providers:
  iris: {{type: sklearn, path: {folder}/iris.skops}}
  wide: {{type: onnx, path: {folder}/wide.onnx}}
models:
  iris: {{targets: [{{provider: iris}}]}}
  wide: {{targets: [{{provider: wide}}]}}
keys: [{{name: bench, key: {KEY}}}]
""")


_WIDE_ROW = np.random.default_rng(0).random(WIDE, dtype=np.float32).round(3)
_BINARY_HEADER = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDE],
                                           "parameters": {"binary_data_size": WIDE * 4}}]})
BODIES = {
    "iris": orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4],
                                      "data": [5.1, 3.5, 1.4, 0.2]}]}),
    "wide": orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDE],
                                      "data": _WIDE_ROW.tolist()}]}),
    # The binary tensor extension, as tritonclient sends it by default.
    "wide-binary": _BINARY_HEADER + _WIDE_ROW.astype("<f4").tobytes(),
}
BINARY_HEADERS = {"inference-header-content-length": str(len(_BINARY_HEADER))}


async def load(url: str, body: bytes, connections: int, seconds: float,
               extra: dict[str, str]) -> list[float]:
    latencies: list[float] = []
    end = time.monotonic() + seconds
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json", **extra}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def worker() -> None:
            while time.monotonic() < end:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, await response.text()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies


def report(name: str, connections: int, latencies: list[float], seconds: float) -> None:
    q = statistics.quantiles(latencies, n=100)
    rate = len(latencies) / seconds
    print(f"| {name} | {connections} | {rate:,.0f} | {q[49] * 1000:.2f} | {q[98] * 1000:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--port", type=int, default=15411)
    p.add_argument("--direct", help="a V2 server's infer URL for the same iris model")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lockgate-bench-v2-"))
    build(folder)
    lockgate = os.path.join(os.path.dirname(sys.executable), "lockgate")
    server = subprocess.Popen([lockgate, "serve", "--config", str(folder / "lockgate.yaml"),
                               "--port", str(args.port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        server.stdout.readline()  # the one line it prints when ready
        print("| model | connections | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
        gateway = f"http://127.0.0.1:{args.port}/v2/models"
        targets = [("gateway iris", f"{gateway}/iris/infer", BODIES["iris"], {}),
                   ("gateway wide, JSON", f"{gateway}/wide/infer", BODIES["wide"], {}),
                   ("gateway wide, binary", f"{gateway}/wide/infer", BODIES["wide-binary"], BINARY_HEADERS)]
        if args.direct:
            targets.append(("direct iris", args.direct, BODIES["iris"], {}))
        for name, url, body, extra in targets:
            for connections in (1, 32):
                latencies = asyncio.run(load(url, body, connections, args.seconds, extra))
                report(name, connections, latencies, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
