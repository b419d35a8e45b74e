"""Storage backends: the protocol every backend implements (``base``) and one module per
source (``huggingface``; ``oci`` and ``local`` later). Backends never import each other."""
