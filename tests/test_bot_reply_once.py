"""The bot's answer to one turn goes out exactly once, whatever point of the answer a
SIGKILL hits (#30 item 2): a real host process (tests/turn_child.py) on a real store and
the Chatwoot emulator, a provider stand-in over HTTP, killed and started again.

The provider stand-in follows the contracts: uazapi's ``POST /send/text`` answers
``messageid`` and ``POST /message/find`` filters by ``track_source``/``track_id``
(tests/fixtures/contracts/uazapi/uazapi-openapi.json); 360dialog's Cloud API
``POST /messages`` answers ``{"messages": [{"id": ...}]}`` and has no look-up of what was
sent (tests/fixtures/contracts/dialog360)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chatwoot_mirror.delivery import BOT, MirroredMessage
from chatwoot_mirror.errors import Deferred, StoreError
from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.store import MemoryStore
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.turns import BotTurns, TurnReply

HERE = Path(__file__).resolve().parent
CHILD_SECONDS = 180  # a generous deadline for one run on a loaded 2-core machine


class ProviderStandIn:
    """Records every send; finds a uazapi message by its track id."""

    def __init__(self) -> None:
        self.sends: list[dict[str, Any]] = []
        self.finds: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = stand_in.answer(self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # a child killed mid-request resets its connection: that is the test, not news
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if path == "/message/find":
                self.finds.append(body)
                found = [{"messageid": s["id"], "track_source": s.get("track_source"),
                          "track_id": s.get("track_id"), "fromMe": True} for s in self.sends
                         if s.get("track_id") == body.get("track_id")
                         and s.get("track_source") == body.get("track_source")]
                return {"returnedMessages": len(found[:1]), "messages": found[:1],
                        "limit": 1, "offset": 0, "hasMore": False}
            sent = {**body, "id": f"3EB0{len(self.sends):06d}", "path": path}
            self.sends.append(sent)
            if path == "/messages":  # Cloud API
                return {"messaging_product": "whatsapp", "messages": [{"id": sent["id"]}]}
            return {"messageid": sent["id"], "status": "Pending"}

    def texts(self) -> list[str]:
        with self.lock:
            return [s["text"] if isinstance(s["text"], str) else s["text"]["body"]
                    for s in self.sends]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_child(workdir: Path, cw: FakeChatwoot, provider: ProviderStandIn, store_env: dict,
              kind: str, kill_at: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATWOOT_")}
    env.update(cw.env())
    env.update(store_env, PROVIDER_URL=provider.url,
               CHATWOOT_MAX_REQUESTS_PER_MINUTE="0", CHATWOOT_CLAIM_TTL_SECONDS="1",
               CHATWOOT_RETRY_BASE_SECONDS="0.05", CHATWOOT_RETRY_MAX_SECONDS="0.5")
    return subprocess.run([sys.executable, str(HERE / "turn_child.py"), str(workdir), kind,
                           kill_at], env=env, capture_output=True, timeout=CHILD_SECONDS)


@pytest.fixture(params=["sqlite", "redis"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict:
    spill = {"CHATWOOT_MIRROR_SPILL": str(tmp_path / "spill.db")}
    if request.param == "sqlite":
        return {**spill, "CHATWOOT_MIRROR_DB": str(tmp_path / "mirror.db")}
    return {**spill, "CHATWOOT_MIRROR_STORE": request.getfixturevalue("redis_url")}


def crash_then_recover(tmp_path: Path, store_env: dict, kind: str,
                       kill_at: str) -> tuple[FakeChatwoot, ProviderStandIn, list[str]]:
    provider = ProviderStandIn()
    cw = FakeChatwoot()
    cw.start()
    try:
        crashed = run_child(tmp_path, cw, provider, store_env, kind, kill_at)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-3000:]
        recovered = run_child(tmp_path, cw, provider, store_env, kind, "none")
        assert recovered.returncode == 0, recovered.stderr.decode()[-3000:]
        assert recovered.stdout.decode().split() == ["drained", "0"]
    except BaseException:
        provider.close()
        cw.stop()
        raise
    calls = (tmp_path / "bot_calls").read_text().splitlines() if (
        tmp_path / "bot_calls").exists() else []
    return cw, provider, calls


@pytest.mark.parametrize("kill_at", ["before_bot", "recorded", "before_send", "after_send"])
def test_the_bots_answer_goes_out_once_whatever_point_a_sigkill_hits(tmp_path, store_env,
                                                                       kill_at):
    cw, provider, calls = crash_then_recover(tmp_path, store_env, "uazapi", kill_at)
    try:
        # asked once: before its answer the bot never ran; after it, the record answers
        assert calls == ["Quando chega meu pedido?"]
        assert provider.texts() == ["Chega amanhã (answer 1)"]
        if kill_at == "after_send":  # the send reached uazapi: found by its track id
            assert [f["track_id"] for f in provider.finds] == [provider.sends[0]["track_id"]]
        else:
            assert kill_at == "before_send" or provider.finds == []
        shown = [(m["message_type"], m["content"]) for m in cw.messages()]
        assert shown == [(0, "Quando chega meu pedido?"), (1, "Chega amanhã (answer 1)")]
    finally:
        provider.close()
        cw.stop()


def test_without_a_look_up_a_send_cut_short_by_a_crash_errs_on_sending_twice(tmp_path,
                                                                              db_path):
    # 360dialog's Cloud API keeps no key of ours to look a send up by: the README says the
    # mirror sends again rather than risk the customer getting no answer
    store = {"CHATWOOT_MIRROR_DB": db_path, "CHATWOOT_MIRROR_SPILL": db_path + ".spill"}
    cw, provider, calls = crash_then_recover(tmp_path, store, "dialog360", "after_send")
    try:
        assert calls == ["Quando chega meu pedido?"]  # the bot is still asked once
        assert provider.texts() == ["Chega amanhã (answer 1)"] * 2
        assert provider.finds == []
        shown = [(m["message_type"], m["content"]) for m in cw.messages()]
        assert shown == [(0, "Quando chega meu pedido?"), (1, "Chega amanhã (answer 1)")]
    finally:
        provider.close()
        cw.stop()


def _turn(key: str) -> MirroredMessage:
    return MirroredMessage(identity=ContactIdentity(key="wa-5511988887777", kind="phone",
                                                    identifier="5511988887777"),
                           direction=BOT, content="", key=key,
                           action={"name": "bot_turn", "turn": {"channel": "uazapi"}})


def test_a_recorded_reply_is_sent_instead_of_asking_again_unless_humans_have_the_contact():
    store, asked, answered, paused = MemoryStore(), [], [], [False]
    turns = BotTurns(store, answer=lambda who, reply, channel: answered.append(reply),
                     is_paused=lambda who: paused[0])

    def runner(turn, identity):  # the bot answers, as Mirror.answer records it
        asked.append(turn)
        turns.settle(TurnReply(["Chega amanhã"], handoff="vendas"))

    turns.register("uazapi", runner)
    turns.run(_turn("t1"))
    assert len(asked) == 1 and answered == []
    turns.run(_turn("t1"))  # the same turn back after a crash: the record, not the bot
    assert len(asked) == 1
    assert answered == [TurnReply(["Chega amanhã"], handoff="vendas")]
    paused[0] = True
    turns.run(_turn("t1"))  # humans took the contact meanwhile: nothing goes out
    assert len(asked) == 1 and len(answered) == 1
    assert turns.current is None


def test_a_turn_waits_when_its_record_cannot_be_read_rather_than_ask_the_bot_blind():
    class Unreadable(MemoryStore):
        def get_value(self, scope, key, now):
            raise StoreError("redis away")

    asked = []
    turns = BotTurns(Unreadable(), answer=lambda *a: None, is_paused=lambda who: False)
    turns.register("uazapi", lambda turn, identity: asked.append(turn))
    with pytest.raises(Deferred):
        turns.run(_turn("t2"))
    assert asked == []
