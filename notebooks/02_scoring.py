# %% [markdown]
# # 02 · Scoring
# Forget/retain importance of every neuron.
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/02_scoring.ipynb) · [LM](../reports/embedded/lm/02_scoring.ipynb).
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
# ## Scoring: how specific is each neuron to a subset?
# For a forget subset $D_u$ and the retain set $D_r$, the score of neuron $n$ is
#
# $$S_n = \frac{\mathrm{mean}_{D_u} |n(x)|}{\epsilon + \mathrm{mean}_{D_r} |n(x)|}, \quad \epsilon = 10^{-3}$$
#
# (the paper's Eq. 1 prints the ratio upside down; the authors' code, and the meaning "important
# for $D_u$", is forget over retain). Neurons are then selected by one global top-k over all
# layers together. A score-only profile (`configs/authors/`) takes the authors' published
# scores instead (`modsep_utils.authors`).

# %%
from modsep_utils import activations, authors, scoring

if authors.is_score_only(cfg):  # the authors' published scores: no weights, no statistics
    print(authors.describe_scores(cfg["experiment"]))
    scores_trained, scores_random = authors.scores_for(cfg, forget_names)
else:
    trained, retain_trained = activations.all_stats(cfg, forget_names, random_init=False)
    random, retain_random = activations.all_stats(cfg, forget_names, random_init=True)
    scores_trained = scoring.all_scores(trained, retain_trained, cfg["eps"])
    scores_random = scoring.all_scores(random, retain_random, cfg["eps"])
for name, s in scores_trained.items():
    print(f"{name:24s} score max {s.max():7.2f}  median {s.median():5.2f}")

# %% [markdown]
# ### Where the top neurons sit
# Share of the top-scored neurons (global selection) in each layer, mean ± std over subsets,
# for the trained and the random model.

# %%
fig, numbers = scoring.plot_top_layers(scores_trained, scores_random, cfg["overlap_frac"])
save_figure(fig, config.figure_path(cfg, "02_top_neurons_by_layer"), numbers)
update_json(config.headline_path(cfg), {"02_top_share_by_layer": {
    "frac": cfg["overlap_frac"], "trained": numbers["trained"]["mean"], "random": numbers["random"]["mean"]}})
plt.show()

# %%
from modsep_utils import authors

authors.skip_rest_if_score_only(cfg, "split-half reliability needs the statistics of two halves, which the authors did not publish")

# %% [markdown]
# ### How reproducible are the scores? (not in the paper)
# Every collection split was gathered in two disjoint halves. Scoring each half on its own
# (against the matching half of the retain set) and comparing gives the split-half reliability:
# the rank correlation of all scores, and the Jaccard index of the two top-`overlap_frac`
# selections against its chance level. A low Jaccard means that the selected neurons depend on
# which text or images happened to be collected: more collection data would change them.

# %%
reliability = scoring.split_half_reliability(
    activations.all_half_stats(cfg, forget_names, random_init=False), cfg["overlap_frac"], cfg["eps"])
fig = scoring.plot_reliability(reliability)
save_figure(fig, config.figure_path(cfg, "02_split_half_reliability"), reliability)
summary = scoring.reliability_summary(reliability)
update_json(config.headline_path(cfg), {"02_split_half_reliability": summary})
print(f"split-half rank correlation {summary['spearman_mean']:.3f} (min "
      f"{summary['spearman_min']:.3f}); top-{cfg['overlap_frac']:.1%} Jaccard "
      f"{summary['jaccard_mean']:.3f} (min {summary['jaccard_min']:.3f}, chance "
      f"{summary['chance_jaccard']:.3f})")
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
# the two halves agree far beyond chance (could fail: too little collection data)
print("top-k selections agree beyond chance in every subset:",
      summary["jaccard_min"] > 2 * summary["chance_jaccard"])
