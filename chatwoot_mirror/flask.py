"""Flask adapter: translates requests for :class:`~chatwoot_mirror.webhooks.WebhookHandler`.

    app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
    # Chatwoot's API inbox webhook URL: https://your-bot.example.com/chatwoot/webhook
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .mirror import Mirror
from .webhooks import WebhookRequest


def create_blueprint(mirror: Mirror, *, name: str = "chatwoot_mirror") -> Blueprint:
    """A blueprint with ``POST /webhook`` (and ``GET /metrics`` with ``CHATWOOT_METRICS``);
    fails at creation without webhook verification."""
    handler = mirror.webhook_handler()
    blueprint = Blueprint(name, __name__)

    @blueprint.post("/webhook")
    def webhook() -> tuple[Response, int]:
        if (request.content_length or 0) > handler.max_bytes:
            return jsonify({"result": "too_large"}), 413
        result = handler.handle(WebhookRequest(
            headers=dict(request.headers), body=request.get_data(), query=request.args.to_dict()
        ))
        return jsonify(result.body), result.status

    metrics = mirror.metrics
    if metrics is not None:
        from .metrics import CONTENT_TYPE

        blueprint.add_url_rule("/metrics", "metrics",
                               lambda: Response(metrics.render(), content_type=CONTENT_TYPE))

    return blueprint
