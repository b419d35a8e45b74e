"""The Azure Blob Storage backend (``az://``): pure parts (``blobs``: URLs, connection strings,
the listing XML, Content-MD5; ``sharedkey``: Shared Key request signing) and edges (``auth``:
workload identity tokens; ``backend``: listing, pinning and ranged GETs for the engine)."""
