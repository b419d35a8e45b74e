"""Kopf handlers: the only glue between Kopf and the agent.

Importing this package registers every handler with Kopf's default registry, so both
``model-agent run`` and ``kopf run -m handlers --standalone -A`` load the same set.
"""

from handlers import lifecycle, models, probes

__all__ = ["lifecycle", "models", "probes"]
