"""The fleet view behind ``model-agent status`` (and ``kubectl model-agent status``): every
model's rollout across the nodes, from the models, the Nodes and the per-node ConfigMaps.

``view`` is pure (aggregation and rendering); ``reads`` is the edge that lists the objects
through kubernetes-asyncio.
"""
