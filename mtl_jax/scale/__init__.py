"""Scale: the mesh and t5x-style logical axes, multi-host start-up, precision, remat and
microbatches (how one step is spread over devices and memory)."""
