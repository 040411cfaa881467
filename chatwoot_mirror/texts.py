"""Default customer-facing texts, in Brazilian Portuguese, Spanish and English.

Every text can be replaced through the environment (``CHATWOOT_TEXT_*``); an empty value
turns that message off.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    #: private note in a contact found to be another's, without a user token to merge them;
    #: {conversation}: the conversation the person's messages go to from now on
    same_person: str
    #: how the private note names each handoff reason (an unknown reason shows as it is)
    reasons: dict[str, str]

    def reason(self, code: str) -> str:
        return self.reasons.get(code, code)


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
    ),
}


def all_default_keywords() -> tuple[str, ...]:
    """Keywords of every language: customers do not always write in the bot's language."""
    seen: dict[str, None] = {}
    for texts in DEFAULTS.values():
        for word in texts.keywords:
            seen.setdefault(word, None)
    return tuple(seen)
