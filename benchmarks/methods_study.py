"""The methods study: which pair-construction rule wins on the default task, over seeds.

    python benchmarks/methods_study.py [--seeds 0 1 2] [--methods NAME ...] [--root runs/methods_study]
        [--out benchmarks/results/methods_study.json] [--set KEY=VALUE ...]

Every method starts from the default preset's SFT policy (SmolLM2-135M-Instruct) and is judged by
the gold reward (VADER) on the same held-out prompts and draws, against the SFT policy's held-out
responses (evaluate_sft), sampled once. The offline methods also share their candidates: prompts,
evaluate_sft, sample, reference and score run once, in ROOT/shared, and every
method × seed run directory links to those outputs (same settings, same cache keys), so the
comparison isolates the method. A method's seed is that of its selection and training
(select.seed, train.seed; ppo.seed for PPO). RS-DPO with 2 rounds links its round 1 from the
RS-DPO run of the same seed.

Results go to OUT after every run: per method, one entry per seed (held-out gold reward, win rate
over SFT, KL to the reference, pairs trained on over all rounds, seconds of its stages beyond the
shared ones, the peak PSS of the stages it ran itself), their
mean and standard deviation, and the reward-vs-KL frontier (OUT with .png, also logged to
MLflow in ROOT's store). A rerun skips the method × seeds OUT already holds for the same settings,
so the study can span several sittings (the shared candidates are checked to be the very same
ones); `--table` prints OUT as the README's Markdown table. `--set` adds overrides to every run
(a smaller model, say, to try the script out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import PeakMemory  # noqa: E402
from record_run import machine, versions  # noqa: E402

from rayalign.config import fingerprint, load_config  # noqa: E402
from rayalign.data.parquet import read_table  # noqa: E402
from rayalign.pipeline.graph import OUTPUT_VERSION  # noqa: E402
from rayalign.pipeline.runner import run_pipeline  # noqa: E402
from rayalign.pipeline.stages import PIPELINE  # noqa: E402

# The default preset, as `rayalign run default` runs it, with one held-out draw per prompt: the
# study's 25 runs must fit about three hours of a 2-core machine.
STUDY = ["evaluate.samples_per_prompt=1"]
SHARED = ("prompts", "evaluate_sft", "sample", "reference", "score")
# Method: (preset, overrides). "sft" trains nothing: its figures are the SFT side of the evaluations.
METHODS: dict[str, tuple[str, list[str]]] = {
    "sft": ("default", []),
    "dpo_labelled_pairs": ("default", ["select.strategy=random_pair"]),
    "best_vs_worst": ("default", ["select.strategy=best_vs_worst"]),
    "rs_dpo": ("default", ["select.strategy=rs_dpo"]),
    "rso_sigmoid_norm": ("default", ["select.strategy=rso"]),
    "rso_hinge_norm": ("default", ["select.strategy=rso", "train.loss=hinge_norm"]),
    "pairwise_ranking": ("default", ["select.strategy=pairwise_ranking"]),
    "rs_dpo_2_rounds": ("default", ["select.strategy=rs_dpo", "rounds=2"]),
    "slic_labelled_pairs": ("default", ["select.strategy=random_pair", "train.loss=slic"]),
    "ppo": ("ppo", []),
}
FIGURES = ("aligned_reward", "win_rate", "kl", "pairs", "seconds", "peak_pss_gib")


def method_config(name: str, seed: int, extra: list[str]):
    preset, overrides = METHODS[name]
    seeds = [f"ppo.seed={seed}"] if preset == "ppo" else [f"select.seed={seed}", f"train.seed={seed}"]
    return load_config(preset, STUDY + extra + overrides + seeds + [f"name={name}-seed{seed}"])


def candidates_digest(shared: Path) -> str:
    """A digest of the shared candidates (prompt, sample index, response, reward), whatever the
    order Ray Data wrote them in: runs of another sitting are only comparable on the same ones."""
    table = read_table(shared / "score")
    rows = sorted(zip(*(table[c].to_pylist() for c in ("prompt_id", "sample_idx", "response", "reward"))))
    return fingerprint(rows)


def link(source: Path, run_dir: Path, stages: tuple[str, ...]) -> None:
    """Link `stages`' complete outputs in `source` into `run_dir` (the runner reuses them when their
    cache keys match, and replaces a link, never its target, when they do not)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        target, here = source / stage, run_dir / stage
        if (target / "_manifest.json").is_file() and not here.exists():
            here.symlink_to(target.resolve(), target_is_directory=True)


def run_method(name: str, seed: int, root: Path, extra: list[str], log) -> dict:
    """One method × seed: its run directory linked to the shared stages, run, measured."""
    cfg = method_config(name, seed, extra)
    run_dir = root / name / f"seed{seed}"
    if cfg.ppo.enabled:
        link(root / "shared", run_dir, ("prompts", "evaluate_sft"))  # reused where its settings match
    else:
        link(root / "shared", run_dir, SHARED)
        if cfg.rounds > 1:
            link(root / "rs_dpo" / f"seed{seed}", run_dir, ("select", "train", "evaluate"))
    start = time.perf_counter()
    with PeakMemory() as memory:
        summary = run_pipeline(cfg, run_dir, log=log)
    # The stages that differ from the shared ones: all of a method's own, round 1's too when linked.
    ran = {node: seconds for node, seconds in summary["stage_seconds"].items() if node not in SHARED}
    pairs = sum(r.get("pairs", 0) for r in summary.get("rounds", [])) or summary.get("pairs", 0)
    return {"seed": seed, "aligned_reward": summary["aligned_reward"], "sft_reward": summary["sft_reward"],
            "win_rate": summary["win_rate"], "kl": summary["kl"], "pairs": pairs,
            "seconds": sum(ran.values()), "stage_seconds": ran, "wall_seconds": time.perf_counter() - start,
            "peak_pss_gib": memory.peak / 2**30, "rounds": summary.get("rounds"), "run_dir": str(run_dir)}


def sft_entries(results: dict) -> list[dict]:
    """The SFT policy's figures, once per seed that any offline method ran: its held-out reward is
    the SFT side of that run's evaluation (the same draws in every run), its KL 0, no pairs."""
    entries = {}
    for name, method in results.items():
        for entry in method["seeds"] if name not in ("sft", "ppo") else []:
            entries.setdefault(entry["seed"], {"seed": entry["seed"], "aligned_reward": entry["sft_reward"],
                                               "sft_reward": entry["sft_reward"], "win_rate": None, "kl": 0.0,
                                               "pairs": 0, "seconds": 0.0, "peak_pss_gib": None})
    return [entries[s] for s in sorted(entries)]


def aggregate(seeds: list[dict]) -> tuple[dict, dict]:
    """Mean and standard deviation (n − 1) over seeds of each figure."""
    mean, std = {}, {}
    for key in FIGURES:
        values = [s[key] for s in seeds if s.get(key) is not None]
        mean[key] = statistics.fmean(values) if values else None
        std[key] = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def frontier(results: dict, path: Path):
    """Held-out gold reward against KL, one point per method × seed (the DPO paper's IMDb figure)."""
    from rayalign.plots import plt, save

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for name, method in results.items():
        points = [(s["kl"], s["aligned_reward"]) for s in method["seeds"] if s.get("kl") is not None]
        if points:
            ax.scatter(*zip(*points), label=name, s=28)
    ax.set_xlabel("KL(policy ‖ reference), nats per sequence")
    ax.set_ylabel("held-out gold reward (VADER, mean)")
    ax.set_title("Methods study: reward against KL, one point per seed")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)
    return path


def table(study: dict) -> str:
    """The README's Markdown table: mean ± std over seeds per method."""
    def cell(method: dict, key: str, digits: int) -> str:
        mean, std = method["mean"][key], method["std"][key]
        if mean is None:
            return "—"
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")

    rows = ["| method | seeds | held-out gold reward | win rate over SFT | KL (nats) | pairs | seconds "
            "| peak PSS (GiB) |", "|---|---|---|---|---|---|---|---|"]
    for name, method in study["methods"].items():
        rows.append(f"| {name} | {len(method['seeds'])} | {cell(method, 'aligned_reward', 3)} | "
                    f"{cell(method, 'win_rate', 3)} | {cell(method, 'kl', 1)} | {cell(method, 'pairs', 0)} | "
                    f"{cell(method, 'seconds', 0)} | {cell(method, 'peak_pss_gib', 1)} |")
    return "\n".join(rows)


def track(study: dict, root: Path, png: Path) -> None:
    import mlflow

    from rayalign.tracking import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri(root))
    experiment = mlflow.get_experiment_by_name("methods_study")
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(
        "methods_study", artifact_location=(root / "mlartifacts").resolve().as_uri())  # as rayalign's runs do
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"methods_study-{study['settings_hash'][:6]}"):
        for name, method in study["methods"].items():
            mlflow.log_metrics({f"{name}/{k}_mean": v for k, v in method["mean"].items() if v is not None})
        mlflow.log_artifact(str(png))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--root", type=Path, default=Path("runs/methods_study"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/methods_study.json"))
    parser.add_argument("--set", dest="extra", nargs="+", default=[], metavar="KEY=VALUE",
                        help="overrides added to every run")
    parser.add_argument("--table", action="store_true", help="print OUT's table and exit")
    args = parser.parse_args()
    settings_hash = fingerprint(OUTPUT_VERSION, STUDY, args.extra, METHODS)
    study = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.table:
        print(table(study))
        return 0
    if study.get("settings_hash") != settings_hash:
        study = {"methods": {}, "sittings": []}
    def log(line: str) -> None:
        print(line, flush=True)

    started = time.perf_counter()
    shared = load_config("default", STUDY + args.extra)
    run_pipeline(shared, args.root / "shared", log=log, stages=[s for s in PIPELINE if s.name in SHARED])
    digest = candidates_digest(args.root / "shared")
    if study.get("candidates_digest", digest) != digest:
        log(f"the shared candidates differ from those {args.out} was measured on: starting the study afresh")
        study = {"methods": {}, "sittings": []}
    study.update(command=" ".join([Path(sys.executable).name, *sys.argv]), settings_hash=settings_hash,
                 settings={"study_overrides": STUDY + args.extra, "methods": METHODS}, candidates_digest=digest,
                 machine=machine(), versions=versions())
    sitting = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": []}
    study["sittings"].append(sitting)
    results = {name: study["methods"].get(name, {"seeds": []}) for name in METHODS}
    for seed in args.seeds:  # seed-major: a partial study has every method's first seed
        for name in args.methods:
            done = {s["seed"] for s in results[name]["seeds"]}
            if name == "sft" or seed in done:
                continue
            log(f"== {name}, seed {seed}")
            results[name]["seeds"].append(run_method(name, seed, args.root, args.extra, log))
            sitting["runs"].append(f"{name}/seed{seed}")
            results["sft"]["seeds"] = sft_entries(results)
            for method in results.values():
                method["seeds"].sort(key=lambda s: s["seed"])
                method["mean"], method["std"] = aggregate(method["seeds"])
            sitting["wall_seconds"] = time.perf_counter() - started
            study["methods"] = {name: method for name, method in results.items() if method["seeds"]}
            args.out.write_text(json.dumps(study, indent=2))
    png = frontier(study["methods"], args.out.with_suffix(".png"))
    track(study, args.root, png)
    print(table(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
