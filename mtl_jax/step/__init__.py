"""The step: TrainState and the pure jitted train / predict steps, losses, the optimizer and
its parameter groups, metrics, evaluation, and the hooks run beside each step."""
