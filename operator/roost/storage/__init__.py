"""The artifact store: content-addressed objects and work results on any fsspec filesystem."""
