"""`model-agent run`: start Kopf standalone and cluster-wide with the agent's handlers."""

from __future__ import annotations

import kopf

from model_agent import blocking, settings


def run(config: settings.Settings) -> int:
    """Run the operator until SIGTERM/SIGINT. The settings reach the handlers through memo."""
    config.require_node_name()
    import handlers  # noqa: F401  (registers the handlers with Kopf's default registry)

    blocking.run(
        kopf.operator(
            standalone=True,
            clusterwide=True,
            liveness_endpoint=config.liveness_endpoint,
            memo=kopf.Memo(settings=config),
        )
    )
    return 0
