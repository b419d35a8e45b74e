"""model-agent: per-node model distribution agent for Kubernetes."""
