"""Ray Train + DeepSpeed training loops."""
