"""The data path: staging and resume (``staging``), byte-range sets (``ranges``, pure) and the
asyncio download engine (``engine``)."""
