"""How far the recomputing layers' gradients (recompute.recompute_activations) are from autograd's
own on the real policy: one DPO micro-batch of a select stage's pairs through the default
preset's policy, both ways, in fp32.

    python benchmarks/recompute_gradients.py --pairs-from runs/default/select
        [--out benchmarks/results/recompute_gradients.json]

"relative_difference" is ‖g_recompute − g_autograd‖ / ‖g_autograd‖ over all parameters;
"worst_tensor" the largest such ratio of one parameter tensor.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_run import write_result  # noqa: E402


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from rayalign.config import load_config
    from rayalign.data.parquet import read_table
    from rayalign.models import resolve_model
    from rayalign.pretrained import load_model, load_tokenizer
    from rayalign.recompute import recompute_activations
    from rayalign.training.preference import preference_batch_loss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs-from", type=Path, required=True, help="a select stage's output folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recompute_gradients.json"))
    args = parser.parse_args()
    config = load_config("default", [])
    path = resolve_model(config.model.policy)
    tokenizer = load_tokenizer(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = read_table(args.pairs_from).slice(0, config.train.micro_batch_size).to_pydict()
    plain = load_model(AutoModelForCausalLM, path, dtype=torch.float32).train()
    recomputing = copy.deepcopy(plain)
    layers = recompute_activations(recomputing)
    losses = []
    for model in (plain, recomputing):
        loss, _ = preference_batch_loss(model, batch, torch.device("cpu"), config.train, pad_id, use_reference=True)
        loss.backward()
        losses.append(loss.item())
    pairs = [(p.grad, q.grad) for p, q in zip(plain.parameters(), recomputing.parameters())]
    difference = sum(((a - b) ** 2).sum() for a, b in pairs) ** 0.5 / sum((a ** 2).sum() for a, _ in pairs) ** 0.5
    worst = max(float((a - b).norm() / a.norm()) for a, b in pairs if a.norm() > 0)
    write_result(args.out, {"model": config.model.policy, "pairs": len(batch["prompt"]), "recomputing_layers": layers,
                            "losses": losses, "relative_difference": float(difference), "worst_tensor": worst},
                 ("relative_difference", "worst_tensor", "recomputing_layers"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
