"""Transfer: start from another run (init_from), the source x target grid (mtl-transfer)."""
