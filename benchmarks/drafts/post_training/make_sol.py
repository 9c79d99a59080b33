import nbformat as nbf
nb = nbf.v4.new_notebook()
C = []
def md(s): C.append(nbf.v4.new_markdown_cell(s.strip()))
def code(s): C.append(nbf.v4.new_code_cell(s.strip()))
md("""
# 14 · Post-training: solutions

Solutions to the exercises of [notebook 14](../14_post_training.ipynb). Each is checked by `course_lib.exercises.ch14`. Nothing is trained here.
""")
code("""
import math

import torch

from course_lib.exercises import ch14
from course_lib.utils import set_seed

set_seed(0)
""")
md("**Exercise 1.** Centre each row on its mean, then divide by its sample standard deviation.")
code("""
def advantages(rewards):
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True)  # unbiased (n - 1), as torch and TRL
    return (rewards - mean) / (std + 1e-4)

assert ch14.check_group_advantages(advantages)
print(advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]])), "<- each group sums to zero")
""")
md("**Exercise 2.** The margin of implicit rewards, then the logistic loss; `log1p(exp(-z))` is $-\\log\\sigma(z)$.")
code("""
def dpo_pair_loss(pc, pr, rc, rr, beta):
    z = beta * ((pc - rc) - (pr - rr))
    return math.log1p(math.exp(-z)) if z > -30 else -z  # for very negative z, log(1 + e^-z) = -z

assert ch14.check_dpo_pair_loss(dpo_pair_loss)
""")
md("**Exercise 3.** Walk from the end of the prompt and stop after the first end token.")
code("""
def response_mask(ids, prompt_len, eos_id):
    mask = [0] * len(ids)
    for t in range(prompt_len, len(ids)):
        mask[t] = 1
        if ids[t] == eos_id:
            break
    return mask

assert ch14.check_response_mask(response_mask)
""")
md("""
**Going further.** (a) With two updates per batch the second update sees $\\rho \\ne 1$; tokens whose ratio has moved
past $1 \\pm \\varepsilon$ in the direction their advantage pushes stop contributing (`GRPOOutput.clip_fraction`).
(b) Online DPO: rebuild the pairs from the current model every few steps; the pairs then stay informative as the model
improves, which is what closes most of the gap to GRPO in practice. (c) Without the KL penalty the flawed reward is
hacked faster and the answers drift further from the SFT model (watch the KL curve).
""")
nb.cells = C
nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
nbf.write(nb, "/tmp/pt/14_post_training_solutions.ipynb")
print("ok")
