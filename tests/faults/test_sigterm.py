"""SIGTERM in the middle of a stream, to a real ``lockgate serve``: a stream that ends within
``server.drain_s`` is served whole, one that does not is ended with an error event at the end
of the drain; either way the process exits 0 and, once it has, storage holds the stream's
record and its cost (the record writer is not cancelled mid-write at shutdown).

tests/test_server.py holds the drain itself (new connections refused, several workers, an
answer still awaited when the drain runs out)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import OPENAI_KEY
from fakes import FakeOpenAI, Reply
from faults.ledger import ANSWER_USD, BUDGET_KEY, KEY, PRICE, spent, stored
from test_cli import Serving, write_config
from test_server import Stream, events, text_of

SHORT = " ".join(f"s{i}" for i in range(8))  # ~1 s of stream: within the drain
LONG = " ".join(f"l{i}" for i in range(40))  # ~4 s: cut at the end of the drain


def test_sigterm_mid_stream_exits_0_and_keeps_each_streams_record_and_cost(
        fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/lockgate.db"
    config = write_config(tmp_path, {
        "storage": storage, "server": {"spill_dir": str(tmp_path / "spill"), "drain_s": 2},
        "providers": {"oai": {"type": "openai", "api_key": OPENAI_KEY, "base_url": fake_openai.base_url}},
        "models": {"gpt": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}], "price": PRICE}},
        "keys": [BUDGET_KEY]})
    fake_openai.enqueue(Reply(text=SHORT, chunk_delay_s=0.1), Reply(text=LONG, chunk_delay_s=0.1))
    with Serving("--config", str(config), cwd=tmp_path) as gw:
        streams = [Stream(gw.port, key=KEY, max_tokens=7, user=name)
                   for name in ("short", "long")]
        firsts = [stream.first_event() for stream in streams]
        gw.terminate()
        short, long = (first + stream.rest() for first, stream in zip(firsts, streams, strict=True))
        code, _, err = gw.wait(timeout=15)
    assert code == 0, err
    assert events(short)[-1] == "[DONE]" and text_of(events(short)) == SHORT
    cut = events(long)
    assert json.loads(cut[-1])["error"]["code"] == "shutting_down"  # an error event, no silent cut
    assert 0 < len(text_of(cut[:-1]).split()) < len(LONG.split())
    # The process is gone: what storage holds now is all there will be.
    records = {r["end_user"]: r for r in stored(storage, 2, within_s=0)}
    assert (records["short"]["status"], records["short"]["cost_usd"]) == (200, ANSWER_USD)
    # cut short: charged its reservation, as the upstream bills what it generated
    assert (records["long"]["status"], records["long"]["error_code"], records["long"]["cost_usd"]) == (
        503, "shutting_down", ANSWER_USD)
    assert spent(storage) == 2 * ANSWER_USD  # what a restarted budget is restored from
