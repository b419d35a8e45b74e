"""Egress: how every request of the agent leaves the node (proxies, trusted CAs).

Pure policy: ``proxies`` (``HTTP(S)_PROXY``/``NO_PROXY``), ``trust`` (which CA bundle),
``policy`` (the ``Egress`` value built once from flags and environment). Edges: ``clients``
(aiohttp routes and SSL contexts for the data path, the oci SDK session) and ``hub`` (the
huggingface_hub HTTP client).
"""
