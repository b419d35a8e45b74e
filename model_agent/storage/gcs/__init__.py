"""The Google Cloud Storage backend (``gs://``): pure parts (``addressing``: URLs, folders and
the endpoint trust rule; ``digests``: md5Hash or crc32c) and edges (``auth``: Application
Default Credentials through google-auth; ``backend``: listing, pinning by generation, and
bearer-token ranged GETs for the download engine)."""
