"""The agent's flags, by topic; ``settings`` joins them in ``--help`` order."""
