"""Response sampling: the vLLM actor used by Ray Data map_batches."""
