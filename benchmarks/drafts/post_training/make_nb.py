import nbformat as nbf
nb = nbf.v4.new_notebook()
C = []
def md(s): C.append(nbf.v4.new_markdown_cell(s.strip()))
def code(s, tags=None):
    c = nbf.v4.new_code_cell(s.strip())
    if tags: c.metadata["tags"] = tags
    C.append(c)

md(r"""
# 14 · Post-training: SFT, DPO and GRPO, with an honest control

Notebook 10 stopped at **supervised fine-tuning** (SFT, 监督微调): the model imitates demonstrations. Today's
assistants and reasoning models go two steps further and learn from **feedback on their own outputs**:
**preference tuning** (偏好优化, here DPO) and **reinforcement learning with verifiable rewards** (可验证奖励的强化学习,
here GRPO). In this notebook you will:

1. write the three objectives side by side, as formulas and as the code of `course_lib.post_training`;
2. tune a small GPT on **a few hundred demonstrations** of 3-digit addition, to a held-out accuracy with room to improve;
3. tune it further with **DPO** on pairs built from its own samples (a correct answer preferred to a wrong one);
4. tune it with **GRPO**, whose only teacher is a program that checks the answer;
5. compare both with **the honest control**: the same extra compute spent on more SFT over the same demonstrations;
6. watch **reward hacking** happen on purpose, with a flawed reward;
7. see where SmolLM2-135M-Instruct (notebook 13) fits: it is itself the product of SFT + DPO.

**Prerequisites:** notebooks 06 (a GPT, `generate`) and 10 (SFT, loss masks). **Run time:** about 2.5 minutes on a
2-core CPU (measured below), well under a minute on a GPU. A longer run with more seeds:
`python benchmarks/post_training_long.py` (about 20 minutes on the CPU).
""")

code(r"""
import copy
import time

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display
from tqdm.auto import tqdm

from course_lib.exercises import ch14
from course_lib.generation import generate
from course_lib.models import GPT, GPTConfig, count_parameters
from course_lib.post_training import (
    AdditionTask, dpo_loss, group_advantages, grpo_loss, kl_k3, preference_pairs, sample_groups, score,
    sequence_logprobs, wilson_interval,
)
from course_lib.utils import get_device, set_seed

NOTEBOOK_START = time.time()
set_seed(0)
device = get_device()
if device.type == "cpu":
    torch.set_num_threads(1)  # a model this small runs faster on one thread than on two that wait for each other
print("device:", device)
""")

code(r"""
# Parameters: sizes and step budgets (a longer run: more SEEDS, EXTRA_STEPS=600; see benchmarks/post_training_long.py)
N_DIGITS = 3              # 3-digit addition: "042+175=" -> "7120$" (answer written least significant digit first)
N_DEMOS = 300             # demonstrations SFT may see (the only place the answers are shown)
N_VAL, N_TEST = 200, 500  # held-out problems: validation (curves, choices) and test (scored once per method)
D_MODEL, N_LAYER, N_HEAD = 64, 2, 4
SFT_STEPS, SFT_LR, SFT_BATCH = 1500, 3e-3, 64
EXTRA_STEPS = 300         # the extra budget: GRPO steps = control SFT steps (same sequences per step)
PROMPTS_PER_STEP, GROUP = 16, 8  # GRPO: 16 fresh prompts x 8 samples = 128 sequences per step
GRPO_LR, KL_BETA, CLIP_EPS = 1e-3, 0.02, 0.2
CONTROL_LR = 1e-3
DPO_PROMPTS, DPO_STEPS, DPO_LR, DPO_BETA, DPO_BATCH = 256, 100, 1e-4, 0.5, 32
HACK_STEPS = 80           # GRPO steps with the flawed reward
SEEDS = (0, 1)
""", tags=["parameters"])

md(r"""
## 1. Three stages, three objectives

Write $x$ for a prompt, $y$ for a response, $\pi_\theta$ for the model being tuned and $\pi_\text{ref}$ for a frozen copy
of it taken before the stage starts.

| stage | data | objective (minimised) |
|---|---|---|
| pre-training / **SFT** | demonstrations $(x, y^\star)$ | $-\log \pi_\theta(y^\star \mid x)$, on the response tokens only |
| **DPO** | pairs $y_w \succ y_l$ for one $x$ | $-\log \sigma\!\Big(\beta\big[\log\tfrac{\pi_\theta(y_w\mid x)}{\pi_\text{ref}(y_w\mid x)} - \log\tfrac{\pi_\theta(y_l\mid x)}{\pi_\text{ref}(y_l\mid x)}\big]\Big)$ |
| **GRPO** | $G$ samples $y_i \sim \pi_\text{old}$ per $x$, rewards $r_i$ | $-\frac{1}{\#\text{tokens}}\sum_{i,t} \min\big(\rho_{i,t} A_i,\ \text{clip}(\rho_{i,t}, 1\pm\varepsilon) A_i\big) + \beta_\text{KL}\,\widehat{\text{KL}}$ |

with $A_i = (r_i - \text{mean}(r)) / \text{std}(r)$ over the group (**group-relative advantage**: no value network),
$\rho_{i,t} = \pi_\theta(y_{i,t}\mid\cdot) / \pi_\text{old}(y_{i,t}\mid\cdot)$, and the KL to the reference estimated per token by
$k_3 = e^{\,\log\pi_\text{ref} - \log\pi_\theta} - (\log\pi_\text{ref} - \log\pi_\theta) - 1 \ge 0$.

DPO's term $\beta \log\frac{\pi_\theta}{\pi_\text{ref}}$ is its **implicit reward**: the loss is a logistic regression
saying "the chosen answer's implicit reward is higher". Its minimiser is $\pi^\star(y) \propto \pi_\text{ref}(y)\, e^{r(y)/\beta}$,
the same policy RLHF with a KL penalty aims at (the unit tests check this on a bandit). All three need the same
quantity: the log-probability of the **response tokens** under a model, with prompt and padding masked.
""")

code(r"""
# The code of the three objectives on one tiny batch: 2 sequences, prompt of 2 tokens, responses of 2 and 1 tokens
torch.manual_seed(0)
toy = GPT(GPTConfig.preset("tiny"))
ids = torch.tensor([[3, 4, 5, 6], [3, 4, 7, 0]])
resp = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0]])    # 1 on response tokens; the last 0 of row 2 is padding
logp = sequence_logprobs(toy, ids, resp)             # (2,) summed log-probabilities of the responses
print("SFT loss  (mean -log p per response token):", round(float(-logp.sum() / resp.sum()), 4))
ref = copy.deepcopy(toy)
with torch.no_grad():
    ref_logp = sequence_logprobs(ref, ids, resp)
out = dpo_loss(logp[:1], logp[1:], ref_logp[:1], ref_logp[1:], beta=0.1)
print("DPO loss  (row 1 chosen, row 2 rejected):   ", round(float(out.loss), 4), "= log 2 while the policy equals the reference")
per_tok = sequence_logprobs(toy, ids, resp, per_token=True)  # (2, 3)
adv = group_advantages(torch.tensor([[1.0, 0.0]])).flatten()  # one prompt, a group of 2: rewards 1 and 0
g = grpo_loss(per_tok, per_tok.detach(), per_tok.detach(), adv, resp[:, 1:], clip_eps=0.2, kl_beta=0.04)
print("GRPO loss (ratio 1, KL 0):                  ", round(float(g.loss), 4), "  advantages", [round(a, 3) for a in adv.tolist()])
assert abs(float(out.loss) - 0.6931) < 1e-3 and float(g.kl) == 0.0
""")

md(r"""
## 2. The task, and the SFT baseline

**Why addition.** A program checks an answer exactly (the reward is 1 for the right digits followed by the end token,
else 0), problems are free to generate, so RL can get *fresh prompts without answers*, and a 2-layer GPT learns it on a
CPU in seconds. The answer is written least significant digit first (`042+175=` → `7120$`), the order in which a carry
is computed; written the usual way the task is much harder for a model that writes left to right.

**The set-up used in practice:** SFT sees only `N_DEMOS` demonstrations. DPO and GRPO never see an answer: they get new
prompts and the checker. The test problems are disjoint from the demonstrations and from everything sampled during
tuning. The hyper-parameters were chosen in a prototype on the validation problems; the test set is scored once per
method, with a 95% Wilson interval.
""")

code(r"""
task = AdditionTask(N_DIGITS, reverse=True)
demos = task.problems(N_DEMOS, seed=100)
val = task.problems(N_VAL, seed=999, exclude=set(demos))
test = task.problems(N_TEST, seed=7, exclude=set(demos) | set(val))
held_out = set(demos) | set(val) | set(test)          # never used as a training prompt by DPO or GRPO
demo_ids, demo_mask = task.demonstrations(demos)
print(f"{len(demos)} demonstrations, e.g. {task.decode(demo_ids[0].tolist())!r}; "
      f"{len(val)} validation and {len(test)} test problems; {10 ** (2 * N_DIGITS):,} problems exist")


def new_model(seed):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=task.vocab_size, block_size=16, n_layer=N_LAYER, n_head=N_HEAD, d_model=D_MODEL)).to(device)


def sft(model, steps, lr, batch, seed, desc):
    # cross-entropy on the response tokens of the demonstrations (prompt tokens get the label -100)
    x, y = demo_ids[:, :-1].to(device), demo_ids[:, 1:].masked_fill(demo_mask[:, 1:] == 0, -100).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc=desc, mininterval=1.0):
        ix = torch.randint(len(demos), (batch,), generator=g)
        loss = model(x[ix], y[ix]).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def accuracy(model, problems):
    ok = task.evaluate(model, problems)
    return sum(ok), len(ok)


def fmt(k, n):
    lo, hi = wilson_interval(k, n)
    return f"{k / n:.1%} [{lo:.1%}, {hi:.1%}]"


t0 = time.time()
sft_models, results = {}, {}
for seed in SEEDS:
    sft_models[seed] = sft(new_model(seed), SFT_STEPS, SFT_LR, SFT_BATCH, seed, f"SFT seed {seed}")
    results[("SFT", seed)] = accuracy(sft_models[seed], test)
sft_seconds = (time.time() - t0) / len(SEEDS)
print(f"{count_parameters(sft_models[SEEDS[0]]):,} parameters; {sft_seconds:.0f} s of SFT per seed")
for seed in SEEDS:
    print(f"seed {seed}: train {fmt(*accuracy(sft_models[seed], demos))}, test {fmt(*results[('SFT', seed)])}")
sft_acc = [results[("SFT", s)][0] / results[("SFT", s)][1] for s in SEEDS]
assert all(0.1 < a < 0.7 for a in sft_acc), f"SFT should leave room for feedback, got {sft_acc}"
""")

md(r"""
The model has learned its demonstrations almost perfectly but gets only part of the held-out problems right: it has
memorised more than it has generalised. That gap is the room feedback can fill.

## 3. DPO on the model's own samples

For each of `DPO_PROMPTS` new prompts the SFT model samples `GROUP` answers; the checker marks them; every prompt with
both a correct and a wrong answer gives pairs (chosen = correct, rejected = wrong). No answer is ever shown: only which
of two of its own answers was right. The reference model is the SFT model, frozen.
""")

code(r"""
def dpo_stage(model, seed):
    ref = copy.deepcopy(model).eval()
    g = torch.Generator().manual_seed(1000 + seed)
    probs = task.problems(DPO_PROMPTS, seed=20_000 + seed, exclude=held_out)
    ids, mask = sample_groups(model, task.prompt_ids(probs).to(device), GROUP, task.answer_len, task.eos_id, generator=g)
    rewards = score(task.reward, [(probs[i // GROUP], ids[i, task.prompt_len:].tolist()) for i in range(len(ids))])
    pairs = torch.tensor(preference_pairs(rewards.view(-1, GROUP)))
    cw, rj = pairs[:, 0], pairs[:, 1]
    with torch.no_grad():
        ref_c, ref_r = sequence_logprobs(ref, ids[cw], mask[cw]), sequence_logprobs(ref, ids[rj], mask[rj])
    opt = torch.optim.AdamW(model.parameters(), lr=DPO_LR, weight_decay=0.0)
    curve = {"chosen": [], "rejected": []}
    model.train()
    for _ in tqdm(range(DPO_STEPS), desc=f"DPO seed {seed}", mininterval=1.0):
        ix = torch.randint(len(cw), (DPO_BATCH,), generator=g)
        pc = sequence_logprobs(model, ids[cw[ix]], mask[cw[ix]])
        pr = sequence_logprobs(model, ids[rj[ix]], mask[rj[ix]])
        out = dpo_loss(pc, pr, ref_c[ix], ref_r[ix], DPO_BETA)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        curve["chosen"].append(float(pc.mean()))
        curve["rejected"].append(float(pr.mean()))
    model.eval()
    with torch.no_grad():
        final = dpo_loss(sequence_logprobs(model, ids[cw], mask[cw]), sequence_logprobs(model, ids[rj], mask[rj]),
                         ref_c, ref_r, DPO_BETA)
    return model, curve, len(pairs), float(rewards.mean()), float(final.margin.mean())


dpo_info = {}
for seed in SEEDS:
    model, curve, n_pairs, sample_acc, margin = dpo_stage(copy.deepcopy(sft_models[seed]), seed)
    results[("DPO", seed)] = accuracy(model, test)
    dpo_info[seed] = (curve, n_pairs, sample_acc, margin)
    print(f"seed {seed}: {n_pairs} pairs (sampled answers {sample_acc:.0%} correct); implicit-reward margin "
          f"0 -> {margin:.2f}; test accuracy {fmt(*results[('SFT', seed)])} -> {fmt(*results[('DPO', seed)])}")

curve = dpo_info[SEEDS[0]][0]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(curve["chosen"], label="chosen (correct)")
ax.plot(curve["rejected"], label="rejected (wrong)")
ax.set_xlabel("DPO step")
ax.set_ylabel("mean log-probability of the answer")
ax.set_title(f"DPO, seed {SEEDS[0]}: the gap grows")
ax.legend()
ax.grid(alpha=0.3)
plt.show()
assert all(info[3] > 0 for info in dpo_info.values()), "DPO should raise the implicit-reward margin on its pairs"
""")

md(r"""
**Why both curves may fall.** DPO only constrains the *difference* of the two log-ratios. Pushing the rejected answer
down is often easiest, and the probability mass freed goes to *other* answers, not necessarily to the chosen one, so
both log-probabilities can fall while the margin grows. A rejected answer also shares most of its tokens with the chosen
one (the same prompt, often most digits): lowering one lowers the other. Whether the greedy answer becomes correct more
often is a separate question, answered by the test accuracy above.

## 4. GRPO: learning from the checker

Each step takes `PROMPTS_PER_STEP` fresh prompts, samples a group of `GROUP` answers for each, scores them with the
checker, and raises the log-probability of answers that beat their group's mean (lowers those below it). A group whose
answers are all right (or all wrong) teaches nothing: its advantages are zero. With one update per batch the ratio
$\rho$ is exactly 1, so the clip never acts: this is the plain policy gradient with a group baseline plus the KL penalty.
""")

code(r"""
def grpo_stage(model, seed, steps, reward_fn, desc, eval_every=50):
    ref = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=GRPO_LR, weight_decay=0.0)
    g = torch.Generator().manual_seed(2000 + seed)
    log = {"reward": [], "kl": [], "length": [], "val_step": [], "val_acc": []}
    for step in tqdm(range(steps + 1), desc=desc, mininterval=1.0):
        if step % eval_every == 0 or step == steps:
            k, n = accuracy(model, val)
            log["val_step"].append(step)
            log["val_acc"].append(k / n)
        if step == steps:
            break
        probs = task.problems(PROMPTS_PER_STEP, seed=30_000 + 1000 * seed + step, exclude=held_out)
        ids, mask = sample_groups(model, task.prompt_ids(probs).to(device), GROUP, task.answer_len, task.eos_id, generator=g)
        rewards = score(reward_fn, [(probs[i // GROUP], ids[i, task.prompt_len:].tolist()) for i in range(len(ids))])
        adv = group_advantages(rewards.view(PROMPTS_PER_STEP, GROUP)).flatten().to(device)  # (n * G,)
        model.train()
        new = sequence_logprobs(model, ids, mask, per_token=True)        # (n * G, T - 1)
        with torch.no_grad():
            ref_lp = sequence_logprobs(ref, ids, mask, per_token=True)
        out = grpo_loss(new, new.detach(), ref_lp, adv, mask[:, 1:], clip_eps=CLIP_EPS, kl_beta=KL_BETA)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.eval()
        log["reward"].append(float(rewards.mean()))
        log["kl"].append(float(out.kl))
        log["length"].append(float(mask.sum(1).float().mean()))
    return model, log


def show_samples(model, problems, title):
    ids = generate(model, task.prompt_ids(problems).to(device), task.answer_len, greedy=True)  # greedy answers
    rows = [f"{task.prompt(*p)} {task.decode(o[task.prompt_len:].tolist())!r:9} {'right' if task.is_correct(p, o[task.prompt_len:].tolist()) else 'wrong'}"
            for p, o in zip(problems, ids)]
    print(title + "\n  " + "\n  ".join(rows))


grpo_models, grpo_logs = {}, {}
t0 = time.time()
for seed in SEEDS:
    grpo_models[seed], grpo_logs[seed] = grpo_stage(copy.deepcopy(sft_models[seed]), seed, EXTRA_STEPS, task.reward, f"GRPO seed {seed}")
    results[("GRPO", seed)] = accuracy(grpo_models[seed], test)
    print(f"seed {seed}: test accuracy {fmt(*results[('SFT', seed)])} -> {fmt(*results[('GRPO', seed)])}")
grpo_seconds = (time.time() - t0) / len(SEEDS)

log = grpo_logs[SEEDS[0]]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
axes[0].plot(torch.tensor(log["reward"]).unfold(0, 10, 1).mean(1), label="mean reward (sampled, 10-step average)")
axes[0].plot(log["val_step"], log["val_acc"], "o-", label="validation accuracy (greedy)")
axes[0].set_xlabel("GRPO step"); axes[0].legend(fontsize=8); axes[0].set_title("reward and accuracy")
axes[1].plot(log["kl"]); axes[1].set_xlabel("GRPO step"); axes[1].set_title("KL to the SFT model (k3, per token)")
axes[2].plot(log["length"]); axes[2].set_xlabel("GRPO step"); axes[2].set_title("answer length (tokens)")
for a in axes:
    a.grid(alpha=0.3)
plt.tight_layout()
plt.show()
show_samples(sft_models[SEEDS[0]], test[:5], "greedy answers before GRPO (SFT model):")
show_samples(grpo_models[SEEDS[0]], test[:5], "after GRPO:")
""")

md(r"""
## 5. The honest control: the same compute spent on more SFT

GRPO used `EXTRA_STEPS` optimizer steps of 128 sequences each (plus the sampling). The control spends the same number of
steps, with the same 128 sequences per step, on more SFT over the **same** demonstrations. If feedback only helped
because the model trained longer, the control would match it. Feedback counts only where it beats the control on the
held-out test problems by more than the confidence interval.
""")

code(r"""
t0 = time.time()
for seed in SEEDS:
    control = sft(copy.deepcopy(sft_models[seed]), EXTRA_STEPS, CONTROL_LR, PROMPTS_PER_STEP * GROUP, 500 + seed, f"control seed {seed}")
    results[("SFT control", seed)] = accuracy(control, test)
control_seconds = (time.time() - t0) / len(SEEDS)

methods = ["SFT", "DPO", "SFT control", "GRPO"]
pooled = {m: (sum(results[(m, s)][0] for s in SEEDS), sum(results[(m, s)][1] for s in SEEDS)) for m in methods}
lines = ["| method | " + " | ".join(f"seed {s}" for s in SEEDS) + " | pooled |", "|---" * (len(SEEDS) + 2) + "|"]
for m in methods:
    lines.append(f"| {m} | " + " | ".join(fmt(*results[(m, s)]) for s in SEEDS) + f" | {fmt(*pooled[m])} |")
display(Markdown("\n".join(lines)))

gain = {s: results[("GRPO", s)][0] / N_TEST - results[("SFT control", s)][0] / N_TEST for s in SEEDS}
lo_g, hi_g = wilson_interval(*pooled["GRPO"])
lo_c, hi_c = wilson_interval(*pooled["SFT control"])
separated = lo_g > hi_c
print("GRPO minus control, per seed:", {s: f"{d:+.1%}" for s, d in gain.items()},
      "| intervals of the pooled accuracies", "do not overlap" if separated else "overlap")
print(f"seconds per seed: SFT {sft_seconds:.0f}, GRPO {grpo_seconds:.0f} (sampling included), control {control_seconds:.0f}")
""")

code(r"""
g_acc, c_acc, d_acc = (pooled[m][0] / pooled[m][1] for m in ("GRPO", "SFT control", "DPO"))
s_acc = pooled["SFT"][0] / pooled["SFT"][1]
verdict = (f"GRPO beats the equal-compute SFT control by {g_acc - c_acc:+.1%} (pooled over {len(SEEDS)} seeds, "
           f"{pooled['GRPO'][1]} test answers each), and the 95% intervals do not overlap: the checker taught the model "
           "something more demonstrations of the same 300 problems did not."
           if separated else
           f"GRPO against the equal-compute SFT control: {g_acc - c_acc:+.1%}, inside the confidence intervals: "
           "no difference can be claimed from this run.")
dpo_verdict = (f"DPO moved the accuracy from {s_acc:.1%} to {d_acc:.1%}: "
               + ("a gain." if wilson_interval(*pooled['DPO'])[0] > wilson_interval(*pooled['SFT'])[1] else
                  "no gain beyond the interval. It widened the implicit-reward margin on its pairs, but offline DPO "
                  "on a fixed set of a few hundred self-made pairs taught the greedy answer little; "
                  "online (iterated) DPO or more pairs would be the next thing to try."))
display(Markdown(f"**Result.** {verdict}  \n**DPO.** {dpo_verdict}"))
assert g_acc > s_acc, "GRPO should improve on the SFT model it starts from"
""")

md(r"""
Why can feedback beat more SFT here? More SFT over 300 problems mostly memorises those 300 problems harder. GRPO sees
thousands of *new* problems (16 per step), and the checker tells it which of its own attempts were right: the
information comes from the verifier, not from more copies of the demonstrations. That is the recipe of RL with
verifiable rewards in reasoning models, at toy scale.

## 6. Reward hacking, on purpose

A reward is only as good as what it checks. Suppose the judge scores *the share of the answer made of digits*
(`AdditionTask.length_reward`): long, confident-looking answers score well, and correctness is not checked at all.
""")

code(r"""
hacked, hack_log = grpo_stage(copy.deepcopy(sft_models[SEEDS[0]]), SEEDS[0], HACK_STEPS, task.length_reward, "GRPO, flawed reward", eval_every=HACK_STEPS)
hk, hn = accuracy(hacked, test)
r0, r1 = sum(hack_log["reward"][:5]) / 5, sum(hack_log["reward"][-5:]) / 5
print(f"flawed reward {r0:.3f} -> {r1:.3f}; answer length {hack_log['length'][0]:.1f} -> {hack_log['length'][-1]:.1f} tokens; "
      f"test accuracy {fmt(*results[('SFT', SEEDS[0])])} -> {fmt(hk, hn)}")
show_samples(hacked, test[:5], "answers after optimising the flawed reward:")
assert r1 > r0 and hk < results[("SFT", SEEDS[0])][0], "the flawed reward should rise while the real accuracy falls"
""")

md(r"""
The proxy went up and the real goal went down: the policy learned to stop writing the end token (a digit scores,
`$` does not) and to keep writing digits. This is **reward hacking** (奖励投机): the optimiser finds what the reward
measures, not what its author meant. The KL penalty slows it; only a better reward prevents it. Real cases: answers
that grow longer because a reward model likes length, code that special-cases the unit tests it is graded by.

## 7. Where SmolLM2-135M-Instruct fits

The chat model of notebook 13 went through these stages: pre-training on text, then SFT on conversations, then DPO on
preference pairs. Its chat behaviour lives in the template: the same weights, given the same question without the
template, just continue text.
""")

code(r"""
from course_lib.assistant import Conversation, load_smollm2

smol, smol_tok = load_smollm2()
question = "What is the boiling point of water at sea level?"
chat_reply = Conversation(smol, smol_tok, greedy=True, max_new_tokens=30).send(question)
raw_ids = torch.tensor([smol_tok.encode(question)])
raw = smol_tok.decode(generate(smol, raw_ids, 30, greedy=True)[0, raw_ids.size(1):].tolist())
print("with the chat template  :", repr(chat_reply))
print("raw continuation        :", repr(raw))
del smol
""")

md(r"""
With the template the model answers as an assistant and stops; without it, it continues the text the way a
pre-trained model would, often inventing the template's markers itself (it has seen them in SFT) or drifting into
another turn. Post-training did not add knowledge so much as a *behaviour*, triggered by the format it was trained on.

## Exercises

Each exercise is checked against `course_lib.post_training`. Replace `raise NotImplementedError` with your code.
Solutions: [solutions/14_post_training_solutions.ipynb](solutions/14_post_training_solutions.ipynb).

**Exercise 1.** Group-relative advantages: given `rewards` (a tensor of shape `(n_prompts, G)`), return
`(rewards - mean) / (std + 1e-4)` per row, with the sample standard deviation (`unbiased`, as `torch.std`).
""")

code(r"""
def advantages(rewards):
    raise NotImplementedError

ch14.check_group_advantages(advantages)
""")

md(r"""
**Exercise 2.** The DPO loss of one pair, from four floats (summed log-probabilities) and `beta`:
$-\log\sigma(\beta[(\text{pc} - \text{rc}) - (\text{pr} - \text{rr})])$. Return a float. Hint: `math.log1p(math.exp(-z))` is $-\log\sigma(z)$.
""")

code(r"""
def dpo_pair_loss(pc, pr, rc, rr, beta):
    raise NotImplementedError

ch14.check_dpo_pair_loss(dpo_pair_loss)
""")

md(r"""
**Exercise 3.** Mask the prompt: given a sampled row `ids` (a list), the prompt length and the end token, return the
response mask (a list of 0/1 of the same length): 1 on the generated tokens up to and including the first end token,
0 on the prompt and on everything after that end token.
""")

code(r"""
def response_mask(ids, prompt_len, eos_id):
    raise NotImplementedError

ch14.check_response_mask(response_mask)
""")

md(r"""
**Going further (no checker).** (a) Take two updates per GRPO batch (re-use the samples): the ratio leaves 1 and the
clip starts to act; plot the clip fraction. (b) Build DPO pairs again every 20 steps from the current model (online
DPO): does it now beat the control? (c) Set `KL_BETA = 0` for the flawed reward and compare how fast it is hacked.

## Summary
""")

code(r"""
total = time.time() - NOTEBOOK_START
display(Markdown(f'''| idea | one line |
|---|---|
| SFT (监督微调) | imitate demonstrations: {N_DEMOS} of them gave {s_acc:.1%} on new problems (pooled over {len(SEEDS)} seeds) |
| DPO (直接偏好优化) | a logistic loss on implicit rewards $\\beta\\log\\pi/\\pi_\\text{{ref}}$ of a chosen and a rejected answer: {d_acc:.1%} |
| GRPO (组相对策略优化) | sample a group, reward by a checker, advantage = reward minus the group mean over its std: {g_acc:.1%} |
| the honest control | the same extra steps of SFT on the same demonstrations: {c_acc:.1%} |
| reward hacking (奖励投机) | a reward that checks length, not correctness, rose while accuracy fell to {hk / hn:.1%} |

This notebook ran in {total:.0f} s.'''))
""")

md(r"""
**Next:** back to [13 · A modern LLM](13_a_modern_llm.ipynb) to chat with a model that went through all of these stages.
""")

nb.cells = C
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
nbf.write(nb, "/tmp/pt/14_post_training.ipynb")
print("ok")
