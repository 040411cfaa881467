"""The demo phone: a customer's WhatsApp, and the provider between it and the bot.

No WhatsApp number is needed to try the sample. The phone plays both ends of a provider
the real adapters talk to: what the customer types is sent to the bot's ``/uazapi/webhook``
as the webhook uazapi would send (same envelope as uazapi's real deliveries), and what the
bot or an agent sends through ``UazapiAdapter`` (or ``Dialog360Adapter``) arrives at this
fake provider's ``/send/text``, ``/send/media`` (or ``/messages``) and shows on the phone.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import requests
from flask import Blueprint, jsonify, request

OWNER = "5511900001111"  # the shop's number


class DemoPhone:
    """One customer's phone and the fake provider endpoints, as a Flask blueprint."""

    def __init__(self, webhook_url: str, token: str, *, number: str = "5511988887777",
                 name: str = "Maria Souza") -> None:
        self.webhook_url = webhook_url
        self.token = token
        self.number = number
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._http = requests.Session()

    def _add(self, who: str, text: str, media: str | None = None) -> dict[str, Any]:
        entry = {"id": uuid.uuid4().hex[:12], "from": who, "text": text, "media": media,
                 "at": time.time()}
        with self._lock:
            self.messages.append(entry)
        return entry

    def type(self, text: str) -> dict[str, Any]:
        """The customer sends ``text``: delivered to the bot's uazapi webhook over HTTP."""
        entry = self._add("customer", text)
        answer = self._http.post(self.webhook_url, data=json.dumps(self._webhook(text, entry)),
                                 headers={"Content-Type": "application/json"}, timeout=30)
        return {"status": answer.status_code, "result": answer.json()}

    def _delivered(self, message_id: str) -> None:
        """The phone got a message: its ``messages_update`` receipt goes to the bot's
        webhook, after the send was answered (as uazapi does), off the request."""
        chat_id = f"{self.number}@s.whatsapp.net"
        body = {"BaseUrl": "http://demo-phone", "EventType": "messages_update",
                "type": "ReadReceipt", "state": "Delivered", "instanceName": "demo",
                "owner": OWNER, "token": self.token,
                "event": {"MessageIDs": [message_id], "Chat": chat_id, "IsFromMe": "False",
                          "IsGroup": "False", "Timestamp": str(int(time.time())),
                          "Type": "Delivered"}}

        def post() -> None:
            time.sleep(0.05)
            try:
                self._http.post(self.webhook_url, data=json.dumps(body), timeout=30,
                                headers={"Content-Type": "application/json"})
            except requests.RequestException:
                pass  # a receipt lost: the message stays "sent" in Chatwoot
        threading.Thread(target=post, daemon=True).start()

    def _webhook(self, text: str, entry: dict[str, Any]) -> dict[str, Any]:
        message_id = "DEMO" + entry["id"].upper()
        chat_id = f"{self.number}@s.whatsapp.net"
        return {
            "BaseUrl": "http://demo-phone", "EventType": "messages", "chatSource": "updated",
            "instanceName": "demo", "owner": OWNER, "token": self.token,
            "chat": {"name": self.name, "wa_name": self.name, "wa_chatid": chat_id,
                     "phone": f"+{self.number}", "wa_isGroup": False},
            "message": {
                "chatid": chat_id, "messageid": message_id, "id": f"{OWNER}:{message_id}",
                "fromMe": False, "wasSentByApi": False, "isGroup": False,
                "sender_pn": chat_id, "senderName": self.name, "text": text,
                "content": text, "type": "text", "messageType": "Conversation",
                "mediaType": "", "messageTimestamp": int(entry["at"] * 1000),
            },
        }

    def blueprint(self) -> Blueprint:
        bp = Blueprint("demo_phone", __name__)

        @bp.get("/phone/messages")
        def messages() -> Any:
            with self._lock:
                return jsonify({"number": self.number, "name": self.name,
                                "messages": list(self.messages)})

        @bp.post("/phone/send")
        def send() -> Any:
            text = str((request.get_json(silent=True) or {}).get("text") or "").strip()
            if not text:
                return jsonify({"error": "text is required"}), 400
            return jsonify(self.type(text))

        # -- the fake provider: what the adapters send arrives here ---------------------------

        @bp.post("/uazapi/send/text")
        def uazapi_text() -> Any:
            if request.headers.get("token") != self.token:
                return jsonify({"error": "Invalid token"}), 401
            body = request.get_json(force=True)
            entry = self._add("business", str(body.get("text") or ""))
            self._delivered("3EB0" + entry["id"].upper())
            return jsonify({"messageid": "3EB0" + entry["id"].upper(), "status": "pending",
                            "response": {"status": "success",
                                         "message": "Message sent successfully"}})

        @bp.post("/uazapi/send/media")
        def uazapi_media() -> Any:
            if request.headers.get("token") != self.token:
                return jsonify({"error": "Invalid token"}), 401
            body = request.get_json(force=True)
            entry = self._add("business", str(body.get("text") or ""), str(body.get("file")))
            self._delivered("3EB0" + entry["id"].upper())
            return jsonify({"messageid": "3EB0" + entry["id"].upper(),
                            "response": {"status": "success",
                                         "message": "Media sent successfully"}})

        @bp.post("/360dialog/messages")
        def dialog360() -> Any:
            body = request.get_json(force=True)
            kind = body.get("type")
            content = body.get(kind) or {}
            entry = self._add("business", str(content.get("body") or content.get("caption")
                                              or ""), content.get("link"))
            return jsonify({"messaging_product": "whatsapp",
                            "messages": [{"id": "wamid.DEMO" + entry["id"]}]})

        return bp
