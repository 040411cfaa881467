"""Typebot as the bot: a bot function backed by Typebot's Chat API.

    bot = TypebotBot("https://typebot.example.com", "my-flow-public-id", store=mirror.store)
    handle_inbound(mirror, adapter, event, bot)

* One Chat API session per contact, kept in the store (it survives restarts): the first
  message calls ``startChat`` (with the contact's phone and name as prefilled variables),
  later ones ``continueChat``. When the flow ends (no ``input`` left) the session is
  dropped and the next message starts the flow again; a ``404`` (session expired or
  deleted) starts it again too, with the same message.
* Bubbles become WhatsApp text: rich text (or markdown) is rendered with WhatsApp's
  ``*bold*``/``_italic_``/``~strike~``, links as ``text (url)``, lists as lines; image,
  video and audio bubbles become files by URL; a choice input is listed with numbers, and
  a customer answering with a number picks that choice.
* Handoff: Typebot has no handoff of its own. Two ways work here: a text bubble
  ``#{"stopBot":true}`` or ``#{"queueId":N}`` (the Whaticket/Z-PRO convention; it is
  never sent to the customer), or an HTTP Request block calling the route of
  :class:`TypebotHandoffHandler` (``chatwoot_mirror.integrations.flask.create_typebot_blueprint``).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from chatwoot_mirror.mirror import Mirror
from chatwoot_mirror.relay import AgentAttachment
from chatwoot_mirror.store import Store
from chatwoot_mirror.untrusted import UntrustedInput, parse_json
from chatwoot_mirror.webhooks import WebhookRequest, WebhookResponse

from ._env import env_value
from ._http import HttpClient, ProviderRejected
from ._payload import digits_of, obj
from .base import BotReply, InboundEvent

SCOPE = "typebot"
HANDOFF_REASON = "typebot_handoff"
_FILE_BUBBLES = {"image": "image", "video": "video", "audio": "audio"}

log = logging.getLogger("chatwoot_mirror.integrations.typebot")


class _Memory:
    """Sessions in this process only (when no store is given): lost on restart, after
    which each contact's flow simply starts again."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    def get_value(self, scope: str, key: str, now: float) -> str | None:
        return self.values.get((scope, key))

    def set_value(self, scope: str, key: str, value: str,
                  expires_at: float | None = None) -> None:
        self.values[(scope, key)] = value

    def delete_value(self, scope: str, key: str, expected: str | None = None) -> bool:
        return self.values.pop((scope, key), None) is not None


class TypebotBot:
    """A bot function: ``reply = bot(event)`` returns a :class:`BotReply`.

    ``base_url`` is the viewer's URL (``https://typebot.io`` or your own; ``/api`` is
    added); ``public_id`` the published flow's public id. ``prefilled(event)`` may return
    more prefilled variables. ``session_minutes``: a session idle this long is dropped.
    Raises :class:`~chatwoot_mirror.integrations.base.ProviderError` when Typebot fails, which
    :func:`~chatwoot_mirror.integrations.inbound.handle_inbound` turns into a handoff to humans.
    """

    def __init__(
        self,
        base_url: str,
        public_id: str,
        *,
        store: Store | None = None,
        prefilled: Callable[[InboundEvent], dict[str, Any]] | None = None,
        session_minutes: float = 24 * 60,
        text_format: str = "richText",
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 20.0),
        max_wait_seconds: float = 10.0,
    ) -> None:
        if not (base_url and public_id):
            raise ValueError("base_url and public_id are required (Typebot: Share > API)")
        if text_format not in ("richText", "markdown"):
            raise ValueError("text_format must be 'richText' or 'markdown'")
        base = base_url.rstrip("/")
        self.api_url = base if base.endswith("/api") else base + "/api"
        self.public_id = public_id
        self.store: Any = store if store is not None else _Memory()
        self.prefilled = prefilled
        self.session_minutes = session_minutes
        self.text_format = text_format
        self.http = _TypebotHttp(session=session, timeout=timeout)
        self.scope = f"{SCOPE}:{public_id}"
        #: a paused Wait block waits at most this long before the flow goes on (the bot's
        #: turn runs off the provider's request, but holds a delivery worker meanwhile)
        self.max_wait_seconds = max_wait_seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 store: Store | None = None) -> TypebotBot:
        """``TYPEBOT_URL`` and ``TYPEBOT_PUBLIC_ID`` (required)."""
        return cls(
            env_value(environ, "TYPEBOT_URL", "the viewer's URL, e.g. https://typebot.io") or "",
            env_value(environ, "TYPEBOT_PUBLIC_ID", "the published flow's public id "
                      "(Typebot: Share > API)") or "",
            store=store,
        )

    def __call__(self, event: InboundEvent) -> BotReply:
        key = event.contact
        state = self._load(key)
        text = event.text
        choices = state.get("choices") or [] if state else []
        if text.strip().isdigit() and 1 <= int(text.strip()) <= len(choices):
            text = choices[int(text.strip()) - 1]  # "2" picks the second listed choice
        answer: dict[str, Any] | None = None
        session_id = state.get("id") if state else None
        if session_id:
            try:
                answer = self.http.call(
                    "continue_chat", f"{self.api_url}/v1/sessions/{session_id}/continueChat",
                    {"message": {"type": "text", "text": text},
                     "textBubbleContentFormat": self.text_format})
            except ProviderRejected as exc:
                if exc.status != 404:
                    raise
                log.info("typebot session gone, starting again contact_ref=%s", _ref(key))
                self.store.delete_value(self.scope, key)
                session_id = None
        if answer is None:
            phone, name = digits_of(event.contact), event.name or ""
            # ours, and the names flows written for the Whaticket family (Z-PRO's Typebot
            # integration) read (research/providers.md section 4.3)
            variables = {"phone": phone, "name": name, "number": phone, "pushName": name}
            if self.prefilled is not None:
                variables.update(self.prefilled(event))
            answer = self.http.call(
                "start_chat", f"{self.api_url}/v1/typebots/{self.public_id}/startChat",
                {"message": {"type": "text", "text": text}, "prefilledVariables": variables,
                 "textBubbleContentFormat": self.text_format, "isStreamEnabled": False})
            session_id = answer.get("sessionId")
        if session_id:
            answer = self._after_waits(str(session_id), answer)
        reply, new_choices = render(answer)
        if reply.handoff or not _expects_input(answer) or not session_id:
            self.store.delete_value(self.scope, key)  # flow over: next message starts anew
        else:
            self.store.set_value(
                self.scope, key, json.dumps({"id": session_id, "choices": new_choices}),
                expires_at=time.time() + self.session_minutes * 60)
        return reply

    def _after_waits(self, session_id: str, answer: dict[str, Any]) -> dict[str, Any]:
        """A Wait block set to pause the flow answers with a ``wait`` client-side action
        that ``expectsDedicatedReply``: the flow goes on only when the client, after the
        wait, calls ``continueChat`` without a message. Do that (up to five waits in a row,
        each at most ``max_wait_seconds``), and keep every bubble in order."""
        bubbles = list(answer.get("messages") or [])
        for _ in range(5):
            paused = [a for a in answer.get("clientSideActions") or []
                      if isinstance(a, dict) and a.get("type") == "wait"
                      and a.get("expectsDedicatedReply")]
            if not paused:
                break
            seconds = (paused[0].get("wait") or {}).get("secondsToWaitFor")
            if isinstance(seconds, (int, float)) and seconds > 0:
                time.sleep(min(float(seconds), self.max_wait_seconds))
            answer = self.http.call(
                "continue_chat", f"{self.api_url}/v1/sessions/{session_id}/continueChat",
                {"textBubbleContentFormat": self.text_format})
            bubbles += list(answer.get("messages") or [])
        return {**answer, "messages": bubbles}

    def _load(self, key: str) -> dict[str, Any] | None:
        value = self.store.get_value(self.scope, key, time.time())
        try:
            return json.loads(value) if value else None
        except ValueError:
            return None

    def reset(self, contact: str) -> None:
        """Forget ``contact``'s session: the next message starts the flow again."""
        self.store.delete_value(self.scope, contact)


class _TypebotHttp(HttpClient):
    """Typebot's HTTP calls, with the adapters' error mapping."""

    def call(self, operation: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(operation, "POST", url, json=body)


def _expects_input(answer: dict[str, Any]) -> bool:
    if answer.get("input"):
        return True
    return any(isinstance(a, dict) and a.get("expectsDedicatedReply")
               for a in answer.get("clientSideActions") or [])


def _ref(key: str) -> str:
    return key[-4:]  # enough to follow a case in logs without logging a phone number


def render(answer: dict[str, Any]) -> tuple[BotReply, list[str]]:
    """A Chat API answer as a :class:`BotReply`, and the choices offered (their texts)."""
    messages: list[str | AgentAttachment] = []
    handoff: dict[str, Any] | None = None
    for bubble in answer.get("messages") or []:
        if not isinstance(bubble, dict):
            continue
        content = obj(bubble.get("content"))
        kind = bubble.get("type")
        if kind == "text":
            text = (markdown_to_whatsapp(str(content.get("markdown") or ""))
                    if content.get("type") == "markdown"
                    else rich_text_to_whatsapp(content.get("richText") or []))
            marker = handoff_marker(text)
            if marker is not None:
                handoff = marker
            elif text.strip():
                messages.append(text)
        elif kind in _FILE_BUBBLES and content.get("url"):
            messages.append(AgentAttachment(str(content["url"]), _FILE_BUBBLES[kind]))
        elif kind == "embed" and content.get("url"):
            messages.append(str(content["url"]))
    choices: list[str] = []
    field = obj(answer.get("input"))
    if field.get("type") in ("choice input", "picture choice input"):
        choices = [str(i.get("content") or i.get("title") or "")
                   for i in field.get("items") or [] if isinstance(i, dict)]
        choices = [c for c in choices if c]
        if choices:
            listing = "\n".join(f"{n}. {c}" for n, c in enumerate(choices, 1))
            if messages and isinstance(messages[-1], str):
                messages[-1] = f"{messages[-1]}\n\n{listing}"
            else:
                messages.append(listing)
    if handoff is None:
        return BotReply(messages=messages), choices
    note = "Typebot: " + ", ".join(f"{k}={v}" for k, v in handoff.items())
    return BotReply(messages=messages, handoff=HANDOFF_REASON, note=note), []


def handoff_marker(text: str) -> dict[str, Any] | None:
    """``#{"stopBot":true}`` / ``#{"queueId":2}`` / ``#{"queueId":2,"userId":7}``: the
    Whaticket family's way for a flow to hand over; ``None`` for any other text."""
    stripped = text.strip()
    if not stripped.startswith("#{"):
        return None
    try:
        data = parse_json(stripped[1:])
    except UntrustedInput:
        return None
    if isinstance(data, dict) and (data.get("stopBot") or "queueId" in data
                                   or "userId" in data):
        return data
    return None


def rich_text_to_whatsapp(nodes: list[Any]) -> str:
    """Typebot's Plate rich text as WhatsApp text."""
    lines: list[str] = []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind in ("ul", "ol"):
            for n, item in enumerate(node.get("children") or [], 1):
                bullet = f"{n}." if kind == "ol" else "•"
                lines.append(f"{bullet} {_inline(item.get('children') or [])}"
                             if isinstance(item, dict) else "")
        else:
            lines.append(_inline(node.get("children") or [node]))
    return "\n".join(lines).strip("\n")


def _inline(children: list[Any]) -> str:
    parts = []
    for child in children:
        if not isinstance(child, dict):
            continue
        if child.get("type") == "a":
            label = _inline(child.get("children") or [])
            url = str(child.get("url") or "")
            parts.append(label if not url or label == url else
                         f"{label} ({url})" if label else url)
        elif "text" in child:
            parts.append(_marked(str(child["text"]), child))
        else:  # lic, span and other wrappers
            parts.append(_inline(child.get("children") or []))
    return "".join(parts)


def _marked(text: str, marks: dict[str, Any]) -> str:
    core = text.strip()
    if not core:
        return text
    for mark, symbol in (("bold", "*"), ("italic", "_"), ("strikethrough", "~")):
        if marks.get(mark):
            core = f"{symbol}{core}{symbol}"
    if marks.get("code"):
        core = f"```{core}```"
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()):]
    return f"{lead}{core}{trail}"


_MD_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_MD_ITALIC = re.compile(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])")
_MD_STRIKE = re.compile(r"~~(.+?)~~")
_MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")
_MD_BULLET = re.compile(r"^(\s*)[-*+] ", re.MULTILINE)


def markdown_to_whatsapp(text: str) -> str:
    """CommonMark (Typebot's ``markdown`` format) as WhatsApp text."""
    text = _MD_LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else
                        f"{m.group(1)} ({m.group(2)})" if m.group(1) else m.group(2), text)
    text = _MD_BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    # bold first, behind a placeholder, so its asterisks are not read as italics
    text = _MD_BOLD.sub(lambda m: f"\x00{m.group(1) or m.group(2)}\x00", text)
    text = _MD_ITALIC.sub(lambda m: f"_{m.group(1)}_", text)
    text = _MD_STRIKE.sub(lambda m: f"~{m.group(1)}~", text)
    return text.replace("\x00", "*")


class TypebotHandoffHandler:
    """The route a Typebot HTTP Request block calls to hand a contact to humans,
    framework-neutral: ``POST`` with ``Authorization: Bearer <token>`` (or ``?token=``)
    and ``{"phone": "{{phone}}", "reason": "...", "note": "..."}`` (reason and note are
    optional). Answers 200 ``{"ok": true, "handed_off": bool}``, 401 or 400."""

    def __init__(self, mirror: Mirror, token: str) -> None:
        if not token:
            raise ValueError("token is required: the secret the HTTP Request block sends")
        self.mirror = mirror
        self.token = token

    def handle(self, request: WebhookRequest) -> WebhookResponse:
        given = request.header("Authorization") or ""
        given = given[7:] if given.lower().startswith("bearer ") else request.query.get(
            "token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return WebhookResponse(401, {"ok": False, "error": "unauthorized"})
        try:
            data = parse_json(request.body or b"{}")
        except UntrustedInput as exc:
            return WebhookResponse(400, {"ok": False, "error": "invalid_json",
                                         "reason": exc.reason})
        contact = data.get("phone") or data.get("contact") if isinstance(data, dict) else None
        if not isinstance(contact, (str, int)) or not str(contact).strip():
            return WebhookResponse(400, {"ok": False, "error": "phone is required"})
        reason = str(data.get("reason") or "typebot_request")[:64]
        note = data.get("note")
        try:
            done = self.mirror.handoff(str(contact), reason,
                                       note=str(note)[:2000] if note else None)
        except ValueError as exc:
            return WebhookResponse(400, {"ok": False, "error": str(exc)})
        return WebhookResponse(200, {"ok": True, "handed_off": done})
