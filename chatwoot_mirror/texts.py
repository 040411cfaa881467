"""Default customer-facing texts, in Brazilian Portuguese, Spanish and English.

The four texts customers get can be replaced through the environment (``CHATWOOT_TEXT_*``);
an empty value turns that message off. Every text, agents' included (notes, message kinds,
failure reasons), can be replaced by a JSON file, ``CHATWOOT_TEXTS_FILE``
(:func:`with_overrides`).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

LANGUAGES = ("pt-BR", "es", "en")


@dataclass(frozen=True)
class Texts:
    handoff: str
    resume: str
    after_hours: str
    no_agent: str  # {protocol}: the conversation number
    note: str  # private note for agents; {reason}
    who: tuple[str, str, str, str]  # transcript labels: customer, bot, agent, attachment
    keywords: tuple[str, ...]
    media_too_large: str  # shown to agents in place of a file; {kind}, {size_mb}
    media_unavailable: str  # {kind}
    from_phone: str  # prefix of messages typed on the business phone itself
    #: prefix of messages another integration sent through the provider's API
    from_api: str
    #: private note in a contact found to be another's, without a user token to merge them;
    #: {conversation}: the conversation the person's messages go to from now on
    same_person: str
    #: how the private note names each handoff reason (an unknown reason shows as it is)
    reasons: dict[str, str]
    #: how a kind of WhatsApp message shows to agents (see :mod:`chatwoot_mirror.kinds`);
    #: {text}: what the customer sent, {type}: the provider's name of the kind
    kinds: dict[str, str]
    #: the provider's names of kinds WhatsApp does not show (Meta's ``unsupported.type``) in
    #: words agents read, for ``{type}`` above; a name not listed shows as it is
    kind_names: dict[str, str]
    #: a file the bot sent by URL that could not be copied into Chatwoot; {kind}, {url}
    file_link: str
    #: private note when the provider could not deliver a message; {reason}
    not_delivered: str
    #: provider failure codes (WhatsApp's, Z-PRO's) explained
    failures: dict[str, str]
    #: an agent's file the provider could not be given: Chatwoot never served it; {name}
    file_not_ready: str
    #: private note when an agent's text went out but a file of it could not; {reason}
    sent_without_file: str

    def reason(self, code: str) -> str:
        return self.reasons.get(code, code)

    def failure(self, error: str | None) -> str:
        """A provider's failure (``"131047 Message failed..."``) as agents read it: the
        known code explained, else the provider's own words."""
        text = (error or "").strip()
        # the code leads a receipt's error; a refused send names it inside the provider's
        # words ("send_text: HTTP 400 (#131026) Message undeliverable")
        for code in re.findall(r"[A-Za-z0-9_]+", text):
            explained = self.failures.get(code)
            if explained:
                return f"{explained} ({code})"
        return text or "?"


DEFAULTS: dict[str, Texts] = {
    "pt-BR": Texts(
        handoff="Certo! Vou te passar para um atendente. Aguarde um instante, por favor.",
        resume="Voltei! Sou o assistente virtual. Em que posso ajudar?",
        after_hours="Nosso atendimento humano está fora do horário agora. Deixe sua mensagem "
                    "e responderemos assim que possível.",
        no_agent="No momento não há atendentes disponíveis. Registramos seu atendimento com o "
                 "protocolo #{protocol} e retornaremos em breve.",
        note="Conversa transferida pelo bot (motivo: {reason}). Últimas mensagens:",
        who=("Cliente", "Bot", "Atendente", "[anexo]"),
        keywords=("atendente", "humano", "pessoa", "operador", "agente", "falar com alguem"),
        media_too_large="[{kind} de {size_mb} MB não copiado: acima do limite]",
        media_unavailable="[{kind} não copiado: o provedor não entregou o arquivo]",
        from_phone="[enviado pelo celular] ",
        from_api="[enviado por outra integração] ",
        same_person="Esta pessoa é a mesma da conversa #{conversation} (o WhatsApp mudou o "
                    "identificador dela). As próximas mensagens vão para lá.",
        reasons={"keyword_detected": "o cliente pediu um atendente",
                 "after_hours": "fora do horário de atendimento",
                 "max_turns": "muitas respostas seguidas do bot",
                 "user_request": "pedido de atendimento", "ai_failure": "falha do bot",
                 "typebot_request": "pedido do fluxo do Typebot",
                 "agent_reply": "um atendente respondeu", "assigned": "atribuída a um atendente",
                 "taken_over": "assumida por um atendente",
                 "opened": "aberta por um atendente", "owner_reply": "respondido pelo celular"},
        kinds={"reaction": "reagiu com {text}", "edit": "editou: {text}",
               "delete": "apagou esta mensagem", "sticker": "[figurinha]",
               "location": "Localização: {text}", "contacts": "Contato: {text}",
               "order": "Pedido:\n{text}", "product": "Produto do catálogo: {text}",
               "poll": "Voto na enquete: {text}",
               "unsupported": "[mensagem do tipo {type}, que o WhatsApp não mostra aqui]",
               "withheld": "[mensagem sem texto (arquivo, figurinha ou outro tipo): o "
                           "provedor não repassa o conteúdo; veja no WhatsApp]",
               "unseen": "[o provedor avisou do envio, mas não do conteúdo]"},
        kind_names={"poll_creation": "enquete", "poll_update": "voto em enquete",
                    "view_once": "visualização única", "event": "evento",
                    "event_creation": "evento", "pin": "mensagem fixada",
                    "edit": "edição", "unsupported": "desconhecido"},
        file_link="[{kind}] {url}",
        not_delivered="Mensagem não entregue ao cliente: {reason}",
        file_not_ready="o arquivo {name} não ficou disponível no Chatwoot a tempo",
        sent_without_file="Texto enviado ao cliente, sem o arquivo: {reason}",
        failures={
            "131047": "mais de 24 h desde a última mensagem do cliente: é preciso um modelo "
                      "(template) aprovado",
            "131026": "o número não recebe mensagens (sem WhatsApp, versão antiga ou "
                      "bloqueou a empresa)",
            "131049": "o WhatsApp limitou mensagens de marketing para este cliente",
            "131050": "o cliente pediu para não receber mensagens de marketing",
            "131051": "tipo de mensagem não suportado",
            "131052": "o arquivo do cliente não pôde ser baixado",
            "131053": "o arquivo não pôde ser enviado (formato ou tamanho)",
            "131042": "problema de pagamento na conta do WhatsApp Business",
            "131031": "a conta do WhatsApp Business está bloqueada",
            "130472": "o número do cliente faz parte de um experimento do WhatsApp",
            "470": "mais de 24 h desde a última mensagem do cliente: é preciso um modelo",
            "invalid_number": "número inválido no WhatsApp",
            "session_error": "a conexão do WhatsApp está fora do ar",
        },
    ),
    "es": Texts(
        handoff="¡Claro! Te paso con un agente. Espera un momento, por favor.",
        resume="¡Volví! Soy el asistente virtual. ¿En qué puedo ayudarte?",
        after_hours="Nuestro equipo está fuera de horario ahora. Deja tu mensaje y te "
                    "responderemos lo antes posible.",
        no_agent="En este momento no hay agentes disponibles. Registramos tu caso con el "
                 "protocolo #{protocol} y te responderemos pronto.",
        note="Conversación transferida por el bot (motivo: {reason}). Últimos mensajes:",
        who=("Cliente", "Bot", "Agente", "[adjunto]"),
        keywords=("agente", "humano", "persona", "operador", "asesor"),
        media_too_large="[{kind} de {size_mb} MB no copiado: supera el límite]",
        media_unavailable="[{kind} no copiado: el proveedor no entregó el archivo]",
        from_phone="[enviado desde el teléfono] ",
        from_api="[enviado por otra integración] ",
        same_person="Esta persona es la misma de la conversación #{conversation} (WhatsApp "
                    "cambió su identificador). Los próximos mensajes irán allí.",
        reasons={"keyword_detected": "el cliente pidió un agente",
                 "after_hours": "fuera del horario de atención",
                 "max_turns": "demasiadas respuestas seguidas del bot",
                 "user_request": "pedido de atención", "ai_failure": "falla del bot",
                 "typebot_request": "pedido del flujo de Typebot",
                 "agent_reply": "un agente respondió", "assigned": "asignada a un agente",
                 "taken_over": "tomada por un agente",
                 "opened": "abierta por un agente", "owner_reply": "respondido desde el teléfono"},
        kinds={"reaction": "reaccionó con {text}", "edit": "editó: {text}",
               "delete": "eliminó este mensaje", "sticker": "[sticker]",
               "location": "Ubicación: {text}", "contacts": "Contacto: {text}",
               "order": "Pedido:\n{text}", "product": "Producto del catálogo: {text}",
               "poll": "Voto en la encuesta: {text}",
               "unsupported": "[mensaje de tipo {type}, que WhatsApp no muestra aquí]",
               "withheld": "[mensaje sin texto (archivo, sticker u otro tipo): el "
                           "proveedor no envía el contenido; véalo en WhatsApp]",
               "unseen": "[el proveedor avisó del envío, pero no del contenido]"},
        kind_names={"poll_creation": "encuesta", "poll_update": "voto en encuesta",
                    "view_once": "visualización única", "event": "evento",
                    "event_creation": "evento", "pin": "mensaje fijado",
                    "edit": "edición", "unsupported": "desconocido"},
        file_link="[{kind}] {url}",
        not_delivered="Mensaje no entregado al cliente: {reason}",
        file_not_ready="el archivo {name} no estuvo disponible en Chatwoot a tiempo",
        sent_without_file="Texto enviado al cliente, sin el archivo: {reason}",
        failures={
            "131047": "pasaron más de 24 h desde el último mensaje del cliente: se necesita "
                      "una plantilla aprobada",
            "131026": "el número no recibe mensajes (sin WhatsApp, versión antigua o "
                      "bloqueó a la empresa)",
            "131049": "WhatsApp limitó los mensajes de marketing para este cliente",
            "131050": "el cliente pidió no recibir mensajes de marketing",
            "131051": "tipo de mensaje no soportado",
            "131052": "no se pudo descargar el archivo del cliente",
            "131053": "no se pudo enviar el archivo (formato o tamaño)",
            "131042": "problema de pago en la cuenta de WhatsApp Business",
            "131031": "la cuenta de WhatsApp Business está bloqueada",
            "130472": "el número del cliente es parte de un experimento de WhatsApp",
            "470": "pasaron más de 24 h desde el último mensaje del cliente: se necesita "
                   "una plantilla",
            "invalid_number": "número inválido en WhatsApp",
            "session_error": "la conexión de WhatsApp está caída",
        },
    ),
    "en": Texts(
        handoff="Sure! I'm passing you to a member of our team. Please hold on a moment.",
        resume="I'm back! I'm the virtual assistant. How can I help?",
        after_hours="Our team is outside business hours right now. Leave your message and "
                    "we will get back to you as soon as possible.",
        no_agent="No agent is available right now. Your request is logged as protocol "
                 "#{protocol} and we will get back to you soon.",
        note="Conversation handed over by the bot (reason: {reason}). Last messages:",
        who=("Customer", "Bot", "Agent", "[attachment]"),
        keywords=("human", "agent", "person", "operator", "representative"),
        media_too_large="[{kind} of {size_mb} MB not copied: over the limit]",
        media_unavailable="[{kind} not copied: the provider did not hand over the file]",
        from_phone="[sent from the phone] ",
        from_api="[sent by another integration] ",
        same_person="This person is the one in conversation #{conversation} (WhatsApp changed "
                    "how it names them). Their next messages go there.",
        reasons={"keyword_detected": "the customer asked for a person",
                 "after_hours": "outside business hours",
                 "max_turns": "too many bot replies in a row",
                 "user_request": "a request for a person", "ai_failure": "the bot failed",
                 "typebot_request": "the Typebot flow asked for it",
                 "agent_reply": "an agent replied", "assigned": "assigned to an agent",
                 "taken_over": "taken over by an agent",
                 "opened": "opened by an agent", "owner_reply": "answered from the phone"},
        kinds={"reaction": "reacted with {text}", "edit": "edited: {text}",
               "delete": "deleted this message", "sticker": "[sticker]",
               "location": "Location: {text}", "contacts": "Contact: {text}",
               "order": "Order:\n{text}", "product": "Catalog product: {text}",
               "poll": "Poll vote: {text}",
               "unsupported": "[a message of kind {type}, which WhatsApp does not show here]",
               "withheld": "[a message without text (a file, sticker or other kind): the "
                           "provider does not pass its content on; see it in WhatsApp]",
               "unseen": "[the provider told of the send, not of its content]"},
        kind_names={"poll_creation": "poll", "poll_update": "poll vote",
                    "view_once": "view-once", "event": "event", "event_creation": "event",
                    "pin": "pinned message", "edit": "edit", "unsupported": "unknown"},
        file_link="[{kind}] {url}",
        not_delivered="Message not delivered to the customer: {reason}",
        file_not_ready="the file {name} was not available in Chatwoot in time",
        sent_without_file="Text sent to the customer, without the file: {reason}",
        failures={
            "131047": "more than 24 h since the customer's last message: a template is "
                      "needed",
            "131026": "the number cannot receive messages (no WhatsApp, an old version, or "
                      "it blocked the business)",
            "131049": "WhatsApp limited marketing messages to this customer",
            "131050": "the customer asked not to get marketing messages",
            "131051": "unsupported message type",
            "131052": "the customer's file could not be downloaded",
            "131053": "the file could not be sent (format or size)",
            "131042": "a payment problem on the WhatsApp Business account",
            "131031": "the WhatsApp Business account is locked",
            "130472": "the customer's number is part of a WhatsApp experiment",
            "470": "more than 24 h since the customer's last message: a template is needed",
            "invalid_number": "not a valid WhatsApp number",
            "session_error": "the WhatsApp connection is down",
        },
    ),
}


def all_default_keywords() -> tuple[str, ...]:
    """Keywords of every language: customers do not always write in the bot's language."""
    seen: dict[str, None] = {}
    for texts in DEFAULTS.values():
        for word in texts.keywords:
            seen.setdefault(word, None)
    return tuple(seen)


#: the ``{names}`` each text may use; a text is formatted with exactly these
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "no_agent": frozenset({"protocol"}), "note": frozenset({"reason"}),
    "media_too_large": frozenset({"kind", "size_mb"}), "media_unavailable": frozenset({"kind"}),
    "same_person": frozenset({"conversation"}), "kinds": frozenset({"text", "type"}),
    "file_link": frozenset({"kind", "url"}), "not_delivered": frozenset({"reason"}),
    "file_not_ready": frozenset({"name"}), "sent_without_file": frozenset({"reason"}),
}
#: texts that are tables: a file's object is laid over the default one, key by key
_TABLES = ("reasons", "kinds", "kind_names", "failures")
#: texts that are lists of words: a file's list replaces the default one
_LISTS = {"who": 4, "keywords": None}


def check_placeholders(name: str, text: str, label: str | None = None) -> None:
    """Raise ``ValueError`` unless ``text`` formats with the placeholders of ``name``
    (:data:`PLACEHOLDERS`): a typo must fail at start-up, not as an exception in a delivery
    worker. Texts that are never formatted (:data:`PLACEHOLDERS` has no entry) may hold any
    braces."""
    if name not in PLACEHOLDERS:
        return
    allowed = PLACEHOLDERS[name]
    try:
        used = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    except ValueError as exc:  # a lone "{" or "}"
        raise ValueError(f"{label or name}: {exc} (write {{{{ and }}}} for braces)") from None
    unknown = sorted(used - allowed)
    if unknown:
        may = ", ".join(f"{{{p}}}" for p in sorted(allowed)) or "none"
        raise ValueError(f"{label or name}: unknown placeholder {{{unknown[0]}}} "
                         f"(it may use {may})")


def with_overrides(texts: Texts, overrides: Mapping[str, Any]) -> Texts:
    """``texts`` with ``overrides`` laid over them, as read from ``CHATWOOT_TEXTS_FILE``: a
    string replaces a text (``""`` turns a customer text off), an object adds to or
    replaces entries of a table (``kinds``, ``kind_names``, ``failures``, ``reasons``), a
    list of strings replaces ``who`` (four labels) or ``keywords``. Raises ``ValueError``
    naming the first key that is unknown, of the wrong type or with a placeholder the text
    cannot fill."""
    known = {f.name for f in fields(Texts)}
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in known:
            raise ValueError(f"{name}: not a text (known: {', '.join(sorted(known))})")
        if name in _TABLES:
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ValueError(f"{name}: must be an object of strings")
            for key, text in value.items():
                check_placeholders(name, text, f"{name}.{key}")
            changes[name] = {**getattr(texts, name), **value}
        elif name in _LISTS:
            size = _LISTS[name]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (
                    size is not None and len(value) != size):
                raise ValueError(f"{name}: must be a list of {size or 'any number of'} strings")
            changes[name] = tuple(value)
        else:
            if not isinstance(value, str):
                raise ValueError(f"{name}: must be a string")
            check_placeholders(name, value)
            changes[name] = value
    return replace(texts, **changes)


def load_overrides(path: str) -> dict[str, Any]:
    """The JSON object in the file ``path``; ``ValueError`` saying what is wrong."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of texts")
    return data
