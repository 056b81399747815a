"""Loading HF checkpoints as data: weights only from safetensors files (no pickle, so loading a
checkpoint cannot run code), and a checkpoint's own Python modules (its config's auto_map) only
when model.trust_remote_code allows it. Every transformers from_pretrained in rayalign goes through
here; vLLM engines get the same two settings (actors/sampler.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ModelNotFoundError(FileNotFoundError):
    """A model name or path that resolves to nothing loadable."""


def require_safetensors(path: str | Path) -> None:
    """Fail unless the checkpoint directory holds its weights as safetensors: rayalign reads no
    pickled weights (pytorch_model.bin, *.pt), since unpickling a file can run code from it."""
    path = Path(path)
    if not any(path.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")))
        raise ModelNotFoundError(
            f"checkpoint {path} has no .safetensors weights" + (f" (only pickled ones: {found})" if found else "")
            + "; rayalign loads weights only from safetensors, which cannot run code. Convert a checkpoint you "
            "trust once with `AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR)` (transformers "
            "writes safetensors)"
        )


def load_model(auto_class: Any, path: str | Path, trust_remote_code: bool = False, **kwargs: Any):
    """`auto_class.from_pretrained(path, **kwargs)` (an AutoModel... class) from the safetensors
    weights of a local checkpoint directory, running code from it only with `trust_remote_code`."""
    require_safetensors(path)
    return auto_class.from_pretrained(path, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs)


def load_model_config(path: str | Path, trust_remote_code: bool = False):
    """The transformers config of a checkpoint directory, running code from it only with
    `trust_remote_code`."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)


def load_tokenizer(path: str | Path, trust_remote_code: bool = False, **kwargs: Any):
    """The tokenizer of a checkpoint directory (or of a GGUF file in it: gguf_file=), running code
    from it only with `trust_remote_code`. Explicit False: transformers' default (None) asks on a
    terminal and runs the code on "y"."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)


def load_gguf_model(path: str | Path, gguf_file: str, **kwargs: Any):
    """The causal LM in a GGUF file (tensors the gguf package parses as data; no pickle, no code)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, trust_remote_code=False, **kwargs)
