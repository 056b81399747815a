"""Shared fixtures: a tiny random Llama with a tokenizer trained on the fly, prompts, a local Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The process's MLflow settings as the suite starts: a Tracker in the test process (and
# mlflow.set_tracking_uri) exports MLFLOW_TRACKING_URI and sets MLflow's global URI, which
# later tests would otherwise inherit (a server a finished module stopped, say).
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")
MLFLOW_BASELINE = {var: os.environ.get(var) for var in MLFLOW_ENV}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Sentiment-laden words: a random model then emits text that VADER scores both ways.
WORDS = ("great wonderful love amazing excellent beautiful brilliant fun happy best good superb "
         "terrible awful boring bad hate worst dull sad horrible poor weak ugly "
         "the film movie plot story acting scene music ending was is and but it a of to very").split()
PROMPTS = [f"review {i}: the {w} film about a {v} story" for i, (w, v) in
           enumerate(zip(WORDS * 2, reversed(WORDS * 2)))][:14]


def _corpus():
    for i in range(400):
        yield " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(12))
    yield from PROMPTS


def build_tokenizer(path: Path, bos: bool = False):
    """A byte-level BPE tokenizer trained on the test corpus, saved to `path`; with `bos`, it adds a
    BOS token to every encoding unless asked not to (add_special_tokens=False), as Llama's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"] + (["<|bos|>"] if bos else [])
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", pair="<|bos|> $A $B",
                                                           special_tokens=[("<|bos|>", tok.token_to_id("<|bos|>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>",
                                   **({"bos_token": "<|bos|>"} if bos else {}))
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return fast


@pytest.fixture(autouse=True)
def mlflow_baseline():
    """Each test starts, and leaves, with the suite's MLflow URI settings (see MLFLOW_BASELINE)."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    def reset():
        for var, value in MLFLOW_BASELINE.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        tracking_utils._tracking_uri = None
    reset()
    yield
    reset()


def tiny_llama_config(tokenizer, **kw):
    from transformers import LlamaConfig

    # head_dim 32: vLLM's CPU attention supports 32, 64, 80, ... (16 fails).
    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=256,
                       tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **kw)


def tiny_config(arch: str, tokenizer, **kw):
    """Two layers, hidden 64, head dim 32 (vLLM's CPU attention supports 32, not 16), tied embeddings."""
    ids = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    if arch == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                           tie_word_embeddings=True, bos_token_id=None, **ids, **kw)
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=64, n_layer=2, n_head=2,
                      bos_token_id=tokenizer.eos_token_id, **ids, **kw)


def save_tiny(arch: str, head: str, path, seed: int) -> str:
    """A random `arch` checkpoint with a causal-LM head or a one-output sequence-classification head."""
    import torch
    import transformers

    tokenizer = build_tokenizer(path)
    classes = {("qwen2", "causal_lm"): "Qwen2ForCausalLM", ("gpt2", "causal_lm"): "GPT2LMHeadModel",
               ("qwen2", "reward"): "Qwen2ForSequenceClassification",
               ("gpt2", "reward"): "GPT2ForSequenceClassification"}
    torch.manual_seed(seed)
    config = tiny_config(arch, tokenizer, **({"num_labels": 1} if head == "reward" else {}))
    model = getattr(transformers, classes[arch, head])(config)
    model.save_pretrained(path)
    return str(path)


def assert_vllm_and_transformers_agree(run_dir: Path) -> None:
    """The reference stage's forward pass of the sampling policy gives vLLM's sampled log-probs,
    token for token (a wrong position offset, bias or tied head would not)."""
    from rayalign.data.parquet import read_table

    ref = read_table(run_dir / "reference")
    for s, r, n in zip(ref["sampler_logprob"].to_pylist(), ref["ref_logprob"].to_pylist(),
                       ref["num_tokens"].to_pylist()):
        assert abs(s - r) < 1e-3 * n + 1e-3


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    """A random-weight 2-layer GPT-2 causal LM and its tokenizer: a policy of another architecture."""
    return save_tiny("gpt2", "causal_lm", tmp_path_factory.mktemp("tiny-gpt2"), seed=0)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> str:
    """A random-weight 2-layer Qwen2 causal LM and its tokenizer: a policy of another architecture."""
    return save_tiny("qwen2", "causal_lm", tmp_path_factory.mktemp("tiny-qwen2"), seed=0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A random-weight 2-layer Llama (hidden 64) and its tokenizer, as an HF checkpoint directory."""
    import torch
    from transformers import LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer(path)
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(tokenizer)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> str:
    """A random-weight sequence-classification Llama with one output: a reward model."""
    import torch
    from transformers import LlamaForSequenceClassification

    path = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = build_tokenizer(path)
    torch.manual_seed(1)
    LlamaForSequenceClassification(tiny_llama_config(tokenizer, num_labels=1)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt_id": f"p{i:02d}", "prompt": p}) + "\n"
                            for i, p in enumerate(PROMPTS)))
    return str(path)


@pytest.fixture(scope="session")
def sft_file(tmp_path_factory) -> str:
    """Demonstrations for the tiny model: each prompt answered with praise."""
    path = tmp_path_factory.mktemp("sft") / "sft.jsonl"
    praise = "great wonderful love amazing excellent beautiful brilliant fun happy best good superb".split()
    path.write_text("".join(json.dumps({"prompt": p, "response": " ".join(praise[i % 5: i % 5 + 6])}) + "\n"
                            for i, p in enumerate(PROMPTS)))
    return str(path)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by the tests that need one."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def run_in_terminal(argv: list[str], timeout: float, cwd: Path | None = None,
                    record: Path | None = None) -> tuple[int, str]:
    """Run a command in a real terminal (a detached tmux session, 200 × 50) and return its exit
    code and everything the terminal showed; without tmux, with its output on a pipe. `record`
    gets every byte the command wrote to the terminal, redrawn lines included."""
    import shlex
    import shutil
    import tempfile
    import uuid

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if shutil.which("tmux") is None:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        if record is not None:
            record.write_text(done.stdout)
        return done.returncode, done.stdout + done.stderr
    name = f"rayalign-{uuid.uuid4().hex[:8]}"
    # The pause lets pipe-pane attach before the command writes.
    command = f"sleep 1; {shlex.join(argv)}; echo RAYALIGN_EXIT=$?; sleep 3600"
    conf = Path(tempfile.mkdtemp(prefix="rayalign-tmux-")) / "tmux.conf"
    conf.write_text("set-option -g history-limit 100000\n")  # the whole output, not the last 2,000 lines
    tmux = ["tmux", "-L", name, "-f", str(conf)]  # a server of its own, started with this environment
    subprocess.run([*tmux, "new-session", "-d", "-s", name, "-x", "200", "-y", "50", "-c", str(cwd or Path.cwd()),
                    command], env=env, check=True)
    if record is not None:
        subprocess.run([*tmux, "pipe-pane", "-o", "-t", name, f"cat >> {shlex.quote(str(record))}"], check=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", name],
                                    capture_output=True, text=True, check=True).stdout
            if "RAYALIGN_EXIT=" in screen:
                code = int(screen.split("RAYALIGN_EXIT=")[1].split()[0])
                return code, screen.split("RAYALIGN_EXIT=")[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv} did not finish in {timeout} s; the terminal shows:\n{screen[-3000:]}")
            time.sleep(2)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts under `root`; stop()
    and start() again keep its port and its store, as a server that went away and came back."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.port = root, free_port()
        self.uri, self.artifacts = f"http://127.0.0.1:{self.port}", root / "artifacts"
        self.proc = None
        self.start()

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
        with open(self.root / "server.log", "a") as log:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                 "--artifacts-destination", str(self.artifacts)],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: the uvicorn worker goes down with it

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "mlflow server did not answer"
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A module's MlflowServer, started here but awaited by the test (wait_ready), so its start
    overlaps the Ray head's."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    yield server
    server.stop()


def tiny_overrides(model: str, prompts: str) -> list[str]:
    """Overrides that size the default preset for the tiny model: seconds per stage on 2 cores."""
    return [
        "name=tiny", f"model.policy={model}", f"data.prompts={prompts}", "data.heldout_fraction=0.3",
        "data.chat_template=true", "sample.k=4", "sample.max_tokens=16", "sample.max_model_len=256",
        "sample.resources.torch_threads=1", "sample.resources.batch_size=8",
        # The forward pass, not the sampler's log-probs: the e2e test compares the two.
        "reference.reuse_sampler_logprobs=false", "reference.resources.torch_threads=1", "select.tau=0.05",
        "train.micro_batch_size=4",
        # Two micro-batches per step and a warm-up: the e2e tests check both in the step history.
        "train.gradient_accumulation_steps=2", "train.warmup_steps=2", "train.learning_rate=1e-3",
        "train.resources.torch_threads=1", "evaluate.samples_per_prompt=2",
    ]


def crash_after_first_checkpoint(loop_config: dict) -> None:
    """A stage's worker loop (loop_config["loop"], "module:function"), made to die right after its
    first checkpoint is reported, once (loop_config["crash_marker"] remembers it): a killed stage."""
    import importlib

    import ray.train

    module, _, name = loop_config["loop"].partition(":")
    train_loop = getattr(importlib.import_module(module), name)
    marker = Path(loop_config["crash_marker"])
    report = ray.train.report

    def crashing_report(metrics, checkpoint=None, **kwargs):
        report(metrics, checkpoint=checkpoint, **kwargs)
        if checkpoint is not None and not marker.exists():
            marker.touch()
            raise RuntimeError("injected crash after the first checkpoint")

    ray.train.report = crashing_report
    train_loop(loop_config)


LOCAL_HEAD = """
import json, os, sys
import ray
from ray._private.authentication.authentication_utils import is_token_auth_enabled
from rayalign.pipeline.runner import connect_ray

connect_ray(None)
worker_niceness = ray.get(ray.remote(num_cpus=0)(lambda: os.nice(0)).remote())
print(json.dumps({"dashboard": ray._private.worker.get_dashboard_url(), "token_auth": is_token_auth_enabled(),
                  "node_ip": ray.util.get_node_ip_address(), "worker_niceness": worker_niceness}), flush=True)
sys.stdin.read()  # until the test is done
ray.shutdown()
"""


@contextmanager
def local_head(env: dict, cwd: Path) -> Iterator[dict]:
    """A Ray started by rayalign's connect_ray(None) in a process of its own, running until the
    block ends: what it says of itself (dashboard URL, token auth on, node IP, a worker's niceness)."""
    head = subprocess.Popen([sys.executable, "-c", LOCAL_HEAD], env=env, cwd=cwd, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield json.loads(head.stdout.readline())
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
