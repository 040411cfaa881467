"""The README's wiring examples for the adapters, run as written (on the emulator)."""

from __future__ import annotations

import json
import re

import responses
from conftest import ROOT, contract
from flask import Flask

from chatwoot_mirror.testing import FakeChatwoot


def snippets() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Channel adapters", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_every_wiring_example_runs_and_answers(tmp_path, monkeypatch):
    blocks = snippets()
    assert len(blocks) == 4  # 360dialog, uazapi, Z-PRO, Typebot
    with FakeChatwoot() as cw:
        for name, value in {
            **cw.env(), "CHATWOOT_MIRROR_DB": str(tmp_path / "m.db"),
            "CHATWOOT_WEBHOOK_SECRET": "s", "D360_API_KEY": "k", "D360_WEBHOOK_SECRET": "d",
            "UAZAPI_URL": "https://example.uazapi.com",
            "UAZAPI_TOKEN": "00000000-0000-4000-8000-000000000001",
            "ZPRO_URL": "https://z.example.com", "ZPRO_API_ID": "a", "ZPRO_TOKEN": "t",
            "ZPRO_WEBHOOK_SECRET": "z", "TYPEBOT_URL": "https://typebot.example.com",
            "TYPEBOT_PUBLIC_ID": "flow", "TYPEBOT_HANDOFF_TOKEN": "tb",
        }.items():
            monkeypatch.setenv(name, value)
        namespace: dict = {"__name__": "readme_example", "my_bot": lambda text: f"echo: {text}"}
        providers = responses.RequestsMock(assert_all_requests_are_fired=False)
        providers.add_passthru(cw.url)
        providers.post("https://waba-v2.360dialog.io/messages",
                       json=contract("dialog360/send_text_response.json"))
        providers.post("https://example.uazapi.com/send/text",
                       json=contract("uazapi/uazapi_send_text_response.json"))
        for path in ("", "/url"):
            providers.post(f"https://z.example.com/v2/api/external/a{path}",
                           json={"message": "Message add queue"})
        providers.start()
        exec(blocks[0], namespace)  # noqa: S102 - the README's own code
        mirror = namespace["mirror"]
        try:
            client = namespace["app"].test_client()
            answer = client.post("/360dialog/webhook?token=d",
                                 json=contract("dialog360/cloud_text.json"))
            assert answer.status_code == 200 and answer.json["events"] == ["queued"]
            for block, url, body in (
                (blocks[1], "/uazapi/webhook", contract("uazapi/uazapi_text.json")),
                (blocks[2], "/zpro/webhook?token=z",
                 contract("zpro/whaticket_saas_connection_webhook_message.json")),
            ):
                namespace["app"] = Flask("readme")
                exec(block, namespace)  # noqa: S102
                answer = namespace["app"].test_client().post(url, data=json.dumps(body))
                assert answer.status_code == 200 and answer.json["events"] == ["queued"]
                assert mirror.flush()  # its bot turn runs before the handoff below
            namespace["app"] = Flask("readme")
            exec(blocks[3], namespace)  # noqa: S102
            handoff = namespace["app"].test_client().post(
                "/typebot/handoff", json={"phone": "5511988887777"},
                headers={"Authorization": "Bearer tb"})
            assert handoff.status_code == 200 and mirror.is_paused("5511988887777")
            assert mirror.flush() and mirror.flush()
            sent: dict[str, list] = {}
            for call in providers.calls:
                sent.setdefault(call.request.url, []).append(json.loads(call.request.body))
            assert [b["text"]["body"] for b in sent["https://waba-v2.360dialog.io/messages"]] == [
                "echo: Oi, vocês entregam no sábado?"]
            assert [b["text"] for b in sent["https://example.uazapi.com/send/text"]] == [
                "Oi! Como posso ajudar?"]
            assert [b["body"] for b in sent["https://z.example.com/v2/api/external/a"]] == [
                "Segue a 2ª via:", mirror.config.text("handoff")]  # the Typebot route's text
            assert [b["mediaUrl"] for b in sent["https://z.example.com/v2/api/external/a/url"]
                    ] == ["https://files.example.com/b.pdf"]
        finally:
            mirror.close(timeout=1)
            providers.stop()
