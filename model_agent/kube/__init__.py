"""Kubernetes API edges: the only modules that talk to the API server (kubernetes-asyncio)."""
