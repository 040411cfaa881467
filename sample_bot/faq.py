"""The sample's bot: a small pt-BR FAQ for a shop. Handing over to a person is not its job:
the mirror's keyword trigger does that ("atendente", "humano", ...)."""

from __future__ import annotations

from chatwoot_mirror.integrations import InboundEvent
from chatwoot_mirror.triggers import Keywords

INTENTS: list[tuple[Keywords, str]] = [
    (Keywords(["horario", "hora", "abre", "fecha", "funciona", "aberto"]),
     "Funcionamos de segunda a sexta, das 8h às 18h, e aos sábados, das 9h às 12h."),
    (Keywords(["entrega", "entregam", "frete", "envio", "prazo", "chega"]),
     "Entregamos em toda a cidade em até 2 dias úteis. O frete é grátis acima de R$ 150."),
    (Keywords(["pagamento", "pagar", "pix", "boleto", "cartao", "parcelar"]),
     "Aceitamos Pix, boleto e cartão de crédito em até 6x sem juros."),
    (Keywords(["troca", "trocar", "devolucao", "devolver", "defeito", "garantia"]),
     "Você pode trocar ou devolver em até 30 dias. É só trazer o produto com a nota fiscal."),
    (Keywords(["oi", "ola", "bom dia", "boa tarde", "boa noite", "hello", "hola"]),
     "Olá! Sou o assistente virtual da Loja Exemplo. Posso ajudar com horário, entrega, "
     "pagamento ou troca. Para falar com uma pessoa, escreva \"atendente\"."),
]

FALLBACK = ("Desculpe, não entendi. Pergunte sobre horário, entrega, pagamento ou troca, "
            "ou escreva \"atendente\" para falar com uma pessoa.")


def answer(event: InboundEvent) -> str:
    """The reply to one customer message."""
    for keywords, reply in INTENTS:
        if keywords.find(event.text):
            return reply
    return FALLBACK
