"""Kopf liveness probes (``@kopf.on.probe``): worker health reported at the liveness endpoint."""
