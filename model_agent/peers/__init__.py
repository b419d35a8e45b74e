"""Peer distribution: agents serve the files they hold and fetch from each other (issue 15)."""
