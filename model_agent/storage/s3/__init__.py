"""The S3 backend (``s3://``): pure parts (``addressing``: URLs and folders; ``digests``: which
checksum an object promises) and edges (``auth``: the AWS credential chain through botocore;
``backend``: listing, pinning and signed ranged GETs for the download engine)."""
