# %% [markdown]
# # 05 · MoEfication
# Balanced k-means clusters of neurons, trained and random model.
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/05_moefication.ipynb) · [LM](../reports/embedded/lm/05_moefication.ipynb).
# The copy in `notebooks/` carries the `smoke` ViT run that CI repeats (few subsets and small
# samples: not the README's numbers); in a report, the cell after the parameters cell names the
# profile it ran. To run another profile or experiment, change `profile` or `experiment` in the
# parameters cell; `python -m modsep_utils.run` runs every notebook for a profile.

# %% tags=["parameters"]
# Parameters (papermill). Everything else comes from configs/<profile>/<experiment>.yaml:
# change profile or experiment here to switch (smoke: the CI size; embedded: the README's runs)
profile = "smoke"
experiment = "vit"  # vit or lm
overrides = {}  # profile keys to change, e.g. {"drops": [0.3]}; written apart, see below

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
from modsep_utils import config
from modsep_utils.io import update_json
from modsep_utils.plots import save_figure

# the profile file with the overrides, checked before anything runs; a run that differs from
# the file writes into results/<profile>/overrides/<slug>/, never over the profile's results
cfg = config.from_parameters(globals())
forget_names = config.subset_list(cfg["forget"])
print(config.describe(cfg))

# %% [markdown]
# ## MoEfication: balanced clusters of neurons (section 2.3.2)
# Per layer, the rows of $W_{in}$ (one per neuron: `fc1`/`intermediate.dense` for ViT,
# `up_proj` for the gated LM) are L2-normalised and split by balanced k-means into $k$
# clusters of exactly `d_mlp // k` neurons (`moe_method`: `fast`, this project's exact balanced
# k-means: k-means++ starts, Lloyd steps in torch, the balanced assignment as a min-cost flow;
# or `reference`, the authors' k-means-constrained call with `size_min = size_max = d_mlp // k`,
# `random_state = 0`; `bench/bench_moe.py` compares the two), for the trained model and a
# random-init model per seed of `random_seeds` (one random model is one draw of weights: the seeds show its spread).
#
# **Which k.** The paper uses $k = 96$ for ViT-Base (3072 neurons, 32 per cluster) and
# $k = 128$ for Mistral-7B (14336 neurons, 112 per cluster). Every profile keeps the paper's
# *cluster size* (`moe_cluster_size`: 32 for ViT, 112 for the LM) and takes the $k$ dividing
# the layer width whose cluster size is nearest to it (`moe.choose_k`; ties go to the smaller
# clusters): the paper profile gets exactly 96 and 128 back; the embedded ViT (1024 neurons)
# gets 32 clusters of 32 (the smoke ViT, 512 neurons, 16 of 32); SmolLM2 (1536 neurons) gets
# 16 clusters of 96 (128 would be as far from 112; the smaller clusters win the tie). `moe_n_init` restarts (the authors' default
# 10; fewer on the embedded LM, see `bench/bench_moe.py`).
#
# **Which rows.** In a gated MLP a neuron is `act(gate(x)) * up(x)`: the authors cluster the
# `up_proj` rows (`moe_weight: up`), but whether the neuron fires is decided by its `gate_proj`
# row. `moe_weight` picks `up`, `gate` or `gate_up` (both rows, each normalised, side by side);
# models with one input matrix (ViT, GPT-2, BERT) ignore it. Notebook 06 compares `up` and `gate`
# for gated models.
#
# Labels are cached under `data/cache/moe/` by the content of the rows clustered and the
# settings, so each choice is cached on its own and notebooks 06 and 07 reuse them.

# %%
from modsep_utils import authors

authors.skip_rest_if_score_only(cfg, "MoEfication clusters the rows of the model's W_in")

# %%
from modsep_utils import moe, overlap

clusterings = moe.model_clusterings(cfg)  # trained, then one random-init model per seed
numbers = moe.summary(clusterings)
print(moe.format_summary(numbers))

# %% [markdown]
# ### Quality and cost per layer
# Within-cluster sum of squares of the normalised rows, divided by that of a random balanced
# assignment (the mean of three): below 1 the clusters are tighter than chance; the random-init
# models (one line per seed) show how much of that a structureless model gets. Right: the
# seconds each layer took when it was clustered (the time recorded in the cache).

# %%
fig = moe.plot_quality(numbers)
fig.suptitle(f"{cfg['model']}: balanced k-means of W_in rows", fontsize=9)
save_figure(fig, config.figure_path(cfg, "05_moefication"),
            {**numbers, "random_over_seeds": moe.random_spread(numbers)})
update_json(config.headline_path(cfg), {"05_moefication": {
    "moe_weight": clusterings["trained"].meta["weight"], **moe.headline(numbers)}})
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
# checks that could fail (balanced sizes are the solver's contract, checked as it clusters)
print("trained: tighter than a random balanced assignment in every layer:",
      moe.tighter_than_random(numbers)["trained"])
print("trained: tighter than every random-init model in every layer:",
      moe.tighter_than_random_models(numbers))
print("the random-init seeds give different clusterings:",
      overlap.distinct([c.labels for c in clusterings.values() if c.meta["random_init"]]))
