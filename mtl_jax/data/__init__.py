"""Task data: offline real-text corpora (PyPI archives), the text-hash split, the synthetic benchmark and its word vocabulary."""
