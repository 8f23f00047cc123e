"""Offline real-text corpora read straight from PyPI package archives, plus a fixed text-hash split."""
