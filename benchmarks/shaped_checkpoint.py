"""Write an HF checkpoint in SmolLM2-135M's or SmolLM2-1.7B's shape with random weights (fixed seed),
and a tokenizer beside it, for throughput benchmarks where no checkpoint of that size can be had
(a lent GPU machine reaches no model hub).

    python benchmarks/shaped_checkpoint.py --shape 1.7b --tokenizer TOKENIZER_DIR --out DIR

TOKENIZER_DIR holds the tokenizer files to copy (the built-in policy's, whose vocabulary of 49152
both shapes share; default: the built-in policy's own checkpoint here). The model's config names no
EOS token and random weights seldom draw the tokenizer's, so responses run to max_tokens (every one
did on the 135M shape, k = 8, 40 tokens).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_shared_prompt import SHAPES, smollm2_shaped_model  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def write_checkpoint(shape: str, tokenizer_dir: Path, out: Path) -> Path:
    """The shaped model's safetensors checkpoint in `out`, with the tokenizer files of `tokenizer_dir`."""
    out.mkdir(parents=True, exist_ok=True)
    smollm2_shaped_model(shape).save_pretrained(out, safe_serialization=True)
    copied = [name for name in TOKENIZER_FILES if (tokenizer_dir / name).is_file()]
    if "tokenizer.json" not in copied:
        raise SystemExit(f"{tokenizer_dir} holds no tokenizer.json: give the folder of a checkpoint's tokenizer")
    for name in copied:
        shutil.copy2(tokenizer_dir / name, out / name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--tokenizer", type=Path, help="a folder with tokenizer.json (default: the built-in policy's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.tokenizer is None:
        from rayalign.models import resolve_model

        args.tokenizer = Path(resolve_model("smollm2-135m-instruct"))
    print(write_checkpoint(args.shape, args.tokenizer, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
