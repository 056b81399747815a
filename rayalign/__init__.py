"""rayalign: rejection-sampling preference alignment (RS-DPO, RSO, DPO, ...) on Ray, vLLM and DeepSpeed.

`rayalign.run(config, overrides)` runs the pipeline from Python and returns its summary."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: Ray workers import rayalign's modules without paying for the config schema.
    if name == "run":
        from rayalign.api import run

        return run
    raise AttributeError(f"module 'rayalign' has no attribute {name!r}")
