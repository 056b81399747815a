"""rayalign: rejection-sampling preference alignment (RS-DPO, RSO, DPO, ...) on Ray, vLLM and DeepSpeed."""

__version__ = "0.1.0"
