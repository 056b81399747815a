"""The Ray Data actor classes (vLLM sampler, sequence log-probs, reward-model and rule scorers)
and the runtime they share (actor pools, threads)."""
