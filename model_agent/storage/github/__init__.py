"""The GitHub releases backend (``github://``): pure parts (``releases``: API URLs, the endpoint
trust rule, pagination links, asset digests) and the edge (``backend``: the release listing
and ranged asset downloads through the engine, which follows GitHub's redirect to its CDN
without the token)."""
