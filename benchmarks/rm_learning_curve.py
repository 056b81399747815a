"""Reward-model learning curve of the rs_dpo_chain task, in plain torch on one GPU.

The chain's SFT model samples 8 responses for each of the 360 built-in movie_reviews prompts
(same split, instruction and chat template as rayalign); the first 6 are labelled by VADER
under Bradley-Terry noise (as the label stage does); a one-output sequence-classification head
on the SFT model is trained with the Bradley-Terry loss; after every epoch the held-out gold
agreement (all 15 pairs of each held-out prompt, gold ties left out) is printed as JSON.
The sizes and learning rates behind the rs_dpo_chain preset come from here: on CPU each
configuration would take an hour.

    KIT=<dir with vaderSentiment/ and sft/ (the chain's SFT model)> python benchmarks/rm_learning_curve.py

Self-contained (no ray, deepspeed or vllm): it ran where only torch and transformers were installed.
"""
import hashlib, itertools, json, math, random, sys, time, os
import torch
from transformers import AutoTokenizer, AutoModelForCausalLM, AutoModelForSequenceClassification
sys.path.insert(0, os.environ["KIT"])
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
M = os.environ["KIT"] + "/sft"
torch.manual_seed(0); random.seed(0)
tok = AutoTokenizer.from_pretrained(M); tok.pad_token = tok.pad_token or tok.eos_token
rows = [json.loads(l) for l in open("rayalign/assets/prompts/movie_reviews.jsonl")]
def heldout(pid): return int.from_bytes(hashlib.sha256(f"0:{pid}".encode()).digest()[:8], "big") / 2**64 < 0.2
inst = "Continue this movie review in one or two sentences:\n\n{prompt}"
for r in rows:
    r["text"] = tok.apply_chat_template([{"role": "user", "content": inst.replace("{prompt}", r["prompt"])}], tokenize=False, add_generation_prompt=True)
    r["split"] = "heldout" if heldout(r["prompt_id"]) else "train"
K = 8
lm = AutoModelForCausalLM.from_pretrained(M, dtype=torch.bfloat16).cuda().eval()
tok.padding_side = "left"; t0 = time.time()
for i in range(0, len(rows), 64):
    b = rows[i:i+64]
    enc = tok([r["text"] for r in b], return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
    with torch.no_grad():
        out = lm.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=40, num_return_sequences=K, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    for j, r in enumerate(b): r["responses"] = texts[j*K:(j+1)*K]
print("sampled", len(rows), "prompts in", round(time.time()-t0), "s", flush=True)
del lm
vader = SentimentIntensityAnalyzer()
def pairs_of(r, n, T, rng):
    resp = r["responses"][:6]; gold = [vader.polarity_scores(x)["compound"] for x in resp]
    cand = [(a, b) for a, b in itertools.combinations(range(len(resp)), 2) if resp[a] != resp[b]]
    out = []
    for a, b in rng.sample(cand, min(n, len(cand))):
        if T == 0: first = gold[a] > gold[b] if gold[a] != gold[b] else rng.random() < .5
        else: first = rng.random() < 1/(1+math.exp(-(gold[a]-gold[b])/T))
        if not first: a, b = b, a
        out.append((r["text"], resp[a], resp[b], gold[a], gold[b], r["prompt_id"]))
    return out
train_rows = [r for r in rows if r["split"] == "train"]; held_rows = [r for r in rows if r["split"] == "heldout"]
print("train prompts", len(train_rows), "heldout", len(held_rows), flush=True)
hrng = random.Random(1); held = [p for r in held_rows for p in pairs_of(r, 15, 0.1, hrng)]
held = [p for p in held if p[3] != p[4]]
tok.padding_side = "right"; tok.truncation_side = "left"
def score(model, texts):
    s = []
    with torch.no_grad():
        for i in range(0, len(texts), 128):
            enc = tok(texts[i:i+128], return_tensors="pt", padding=True, add_special_tokens=False).to("cuda")
            s += model(**enc).logits[:, 0].float().tolist()
    return s
def agreement(model):
    c = score(model, [p[0]+p[1] for p in held]); r = score(model, [p[0]+p[2] for p in held])
    return sum((a-b)*(g-h) > 0 for a, b, (_, _, _, g, h, _) in zip(c, r, held)) / len(held)
def run(n_prompts, ppp, lr, epochs, mbs=8, T=0.1, dedupe=False):
    rng = random.Random(0)
    data = [p for r in train_rows[:n_prompts] for p in pairs_of(r, ppp, T, rng)]
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(M, num_labels=1, dtype=torch.float32).cuda()
    model.config.pad_token_id = tok.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    res = []; seqs = 0
    for ep in range(epochs):
        if dedupe:  # keep each prompt's pairs together, shuffle prompts
            groups = {}
            for p in data: groups.setdefault(p[5], []).append(p)
            keys = list(groups); rng.shuffle(keys); order = [p for k in keys for p in groups[k]]
        else:
            order = data[:]; rng.shuffle(order)
        model.train()
        for i in range(0, len(order), mbs):
            b = order[i:i+mbs]
            texts = [p[0]+p[1] for p in b] + [p[0]+p[2] for p in b]
            uniq = sorted(set(texts)) if dedupe else texts
            enc = tok(uniq, return_tensors="pt", padding=True, add_special_tokens=False, truncation=True, max_length=256).to("cuda")
            rw = model(**enc).logits[:, 0].float(); seqs += len(uniq)
            ix = {t: j for j, t in enumerate(uniq)} if dedupe else None
            if dedupe:
                c = rw[torch.tensor([ix[t] for t in texts[:len(b)]], device="cuda")]; r = rw[torch.tensor([ix[t] for t in texts[len(b):]], device="cuda")]
            else:
                c, r = rw[:len(b)], rw[len(b):]
            loss = torch.nn.functional.softplus(-(c - r)).mean()
            opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
        model.eval(); res.append(round(agreement(model), 3))
    print(json.dumps({"prompts": n_prompts, "ppp": ppp, "lr": lr, "mbs": mbs, "T": T, "dedupe": dedupe,
                      "pairs": len(data), "seqs_forwarded": seqs, "agreement_per_epoch": res}), flush=True)
configs = [  # (train prompts, pairs per prompt, lr, epochs, micro-batch, T, group by prompt)
    (64, 6, 3e-5, 3), (64, 6, 1e-4, 3), (64, 15, 3e-5, 3), (64, 15, 1e-4, 3), (64, 15, 1e-4, 3, 15, 0.1, True),
    (128, 15, 1e-4, 2, 15, 0.1, True), (192, 15, 1e-4, 2, 15, 0.1, True), (288, 15, 1e-4, 2, 15, 0.1, True),
    (192, 6, 1e-4, 2, 8, 0.1, False),
]
for c in configs:
    run(*c)
