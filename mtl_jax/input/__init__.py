"""The input path: seqio provider -> training stream (mixing rates, schedules, the realised-mix
monitor) -> fixed-shape features; vocabularies, per-task head info, multi-label groups, and
the data_stats CLI. Offline corpora and file tasks live next door in mtl_jax/data/."""
