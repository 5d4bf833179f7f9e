"""Classical models through the gateway's V2 front door: throughput and p50/p99 latency of
``POST /v2/models/{name}/infer`` at 1 and 32 connections, for an iris-sized scikit-learn model
and a 1 MB-input ONNX model run in the gateway's process (built here, in a temporary folder).

    .venv/bin/python bench/v2.py [--seconds 5] [--servers] [--direct URL/v2/models/NAME/infer]

``--servers`` also starts the same iris model in Seldon MLServer (from ``.venv-mlserver``, see
tests/servers/mlserver.txt) and in ``mlflow models serve``, and measures each called directly
and through the gateway (``kserve`` and ``mlflow`` adapters): the in-process path against the
model servers, and what a proxied V2 call adds. ``--direct`` adds any other V2 server's infer
URL for the same iris body.
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


def build(folder: Path, servers: dict[str, str]) -> LogisticRegression:
    x, y = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=1000).fit(x, y)
    skops.io.dump(iris, folder / "iris.skops")
    graph = helper.make_graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)], "wide",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
                              initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, folder / "wide.onnx")
    providers = "".join(f"\n  {name}: {{type: {kind}, base_url: {url}}}" for name, (kind, url) in
                        {"mls": ("kserve", servers.get("mlserver")),
                         "mlf": ("mlflow", servers.get("mlflow"))}.items() if url)
    models = "".join(f"\n  iris-{name}: {{targets: [{{provider: {p}, model: iris}}]}}"
                     for name, p in (("mlserver", "mls"), ("mlflow", "mlf")) if name in servers)
    (folder / "lockgate.yaml").write_text(f"""
storage: sqlite:///{folder}/bench.db
telemetry: {{access_log: false}}
providers:
  iris: {{type: sklearn, path: {folder}/iris.skops}}
  wide: {{type: onnx, path: {folder}/wide.onnx}}{providers}
models:
  iris: {{targets: [{{provider: iris}}]}}
  wide: {{targets: [{{provider: wide}}]}}{models}
keys: [{{name: bench, key: {KEY}}}]
""")
    return iris


Servers = tuple[dict[str, str], list["subprocess.Popen[bytes]"]]


def start_servers(folder: Path, iris: LogisticRegression) -> Servers:
    """The iris model in MLServer and in ``mlflow models serve``: their base URLs."""
    import joblib
    import mlflow.sklearn

    root = Path(__file__).resolve().parents[1]
    mlserver = root / ".venv-mlserver" / "bin" / "mlserver"
    (folder / "mls").mkdir()
    joblib.dump(iris, folder / "mls" / "iris.joblib")
    (folder / "mls" / "model-settings.json").write_bytes(orjson.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./iris.joblib"}}))
    mlflow.sklearn.save_model(iris, folder / "mlf")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLSERVER_HOST": "127.0.0.1", "MLSERVER_HTTP_PORT": "15431", "MLSERVER_GRPC_PORT": "15432",
           "MLSERVER_METRICS_PORT": "15433", "MLSERVER_PARALLEL_WORKERS": "0"}
    started = [
        subprocess.Popen([str(mlserver), "start", str(folder / "mls")], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([str(bin_dir / "mlflow"), "models", "serve", "-m", str(folder / "mlf"),
                          "--env-manager", "local", "-h", "127.0.0.1", "-p", "15434"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)]
    urls = {"mlserver": "http://127.0.0.1:15431", "mlflow": "http://127.0.0.1:15434"}
    for probe in (f"{urls['mlserver']}/v2/models/iris/ready", f"{urls['mlflow']}/ping"):
        deadline = time.monotonic() + 120
        while not _answers(probe):
            if time.monotonic() > deadline:
                raise SystemExit(f"{probe} did not answer within 120 s")
            time.sleep(0.3)
    return urls, started


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


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
    p.add_argument("--servers", action="store_true",
                   help="also start the iris model in MLServer and mlflow models serve")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lockgate-bench-v2-"))
    servers: dict[str, str] = {}
    started: list[subprocess.Popen[bytes]] = []
    if args.servers:
        x, y = load_iris(return_X_y=True)
        servers, started = start_servers(folder, LogisticRegression(max_iter=1000).fit(x, y))
    build(folder, servers)
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
        if servers:
            mlflow_body = orjson.dumps({"inputs": [[5.1, 3.5, 1.4, 0.2]]})
            targets += [
                ("MLServer direct, iris", f"{servers['mlserver']}/v2/models/iris/infer", BODIES["iris"], {}),
                ("gateway -> MLServer (kserve)", f"{gateway}/iris-mlserver/infer", BODIES["iris"], {}),
                ("mlflow models serve direct, iris", f"{servers['mlflow']}/invocations", mlflow_body, {}),
                ("gateway -> mlflow", f"{gateway}/iris-mlflow/infer", BODIES["iris"], {})]
        if args.direct:
            targets.append(("direct iris", args.direct, BODIES["iris"], {}))
        for name, url, body, extra in targets:
            for connections in (1, 32):
                latencies = asyncio.run(load(url, body, connections, args.seconds, extra))
                report(name, connections, latencies, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
        for process in started:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
