"""The run: the trainer loop, checkpoints, the MODEL_DIR lock, run_spec / data fingerprint
(what a resume must match), where parameters start, and the one-line failure reports
(write errors, device OOM, crash site) with their test-only fault injection."""
