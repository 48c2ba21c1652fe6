# %% [markdown]
# # 06 · Lorenz curves and AUC
# How concentrated the selected neurons are in MoEfication clusters (Figure 6).
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/06_auc.ipynb) · [LM](../reports/embedded/lm/06_auc.ipynb).
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
# ## Do the selected neurons fall into few clusters? (Figure 6)
# Here the selection takes the same fraction `auc_frac` of *every layer* (a global top-k can pile
# the neurons into a few layers, leaving others empty). For one layer, count the selected
# neurons in each MoEfication cluster, sort the counts in descending order and accumulate: the
# Lorenz curve $S_j$, the share held by the $j$ fullest clusters (Figure 6a).
#
# Its normalised area, two variants:
#
# - **exact**: $A = \frac{1}{k_{eff} - 1} \sum_{j=1}^{k_{eff}-1} S_j$ with $k_{eff} = \min(N, k)$:
#   exactly 1.0 when all $N$ selected neurons share a cluster and 0.5 when they are spread
#   evenly (with fewer neurons than clusters, one per cluster is the most even possible,
#   hence $k_{eff}$);
# - **authors**: the authors' left Riemann sum `sum(c[:x]) / (c[x] * x)`, $x = \min(N, k)$,
#   which gives $(k-1)/(2k)$ for an even spread; use it to compare with the paper's figure.
#
# No selected neuron gives no curve (NaN, never a number). Chance is well above 0.5 for small
# selections, so every figure shows a random selection of the same size (chance, with a band
# of ± 2 sd of one random selection's area) and the most concentrated selection the cluster
# sizes allow (best achievable). How far an area lies beyond chance is its z-score,
# $z = (A - \bar A_{chance}) / \mathrm{sd}(A_{chance})$, from 200 random selections of the same
# size per layer. The random-model curves are computed for every seed of `random_seeds`.

# %%
from modsep_utils import authors

authors.skip_rest_if_score_only(cfg, "the Lorenz curves need MoEfication clusters of the model's weights")

# %%
from modsep_utils import auc, moe, overlap

trained_scores, random_scores = overlap.seed_scores(cfg, forget_names)  # random: {seed: scores}
clusterings = moe.model_clusterings(cfg)  # notebook 05's labels, from the cache
labels = moe.labels_by_seed(clusterings)  # {"trained": labels, "random": {seed: labels}}
k = clusterings["trained"].k
masks = auc.selections(trained_scores, random_scores, cfg["auc_frac"])
tables = auc.seed_tables(labels, masks, k, seed=cfg["seed"])
table = tables[list(tables)[0]]  # the first seed's: the default random model
numbers = auc.seeds_summary(tables)
print(f"{cfg['auc_frac']:.1%} of every layer = {table['n_selected'][0][0]} neurons per layer; "
      f"k = {k} clusters of {table['cluster_size']}; clusterings read from the cache: "
      f"{all(c.from_cache.all() for c in clusterings.values())}")
print(auc.format_seeds_summary(numbers))

# %% [markdown]
# ### Figure 6a: one Lorenz curve
# The first subset, in the layer where the trained model's selections are most concentrated on
# average.

# %%
layer = auc.most_concentrated_layer(table)
subset = forget_names[0]
curves, aucs = auc.example_curves(auc.one_seed(labels), auc.one_seed(masks), subset, layer, k,
                                  seed=cfg["seed"])
fig = auc.plot_lorenz(curves, aucs, title=f"{cfg['model']}: {subset}, layer {layer}, "
                      f"{cfg['auc_frac']:.1%} of the layer")
save_figure(fig, config.figure_path(cfg, "fig6a_lorenz_example"),
            {"subset": subset, "layer": layer, "curves": curves, "aucs": aucs})
plt.show()

# %% [markdown]
# ### Figure 6b (ViT) / 6c (LM): AUC by layer
# Trained clusters × trained neurons (mean ± sd over subsets), random-model clusters ×
# random-model neurons and random-model clusters × trained neurons (does the trained selection
# concentrate even in clusters it was not trained with?), each the mean over subsets, ± sd over
# the random seeds; chance (± 2 sd of one random selection) and the best achievable. Right: the
# same as z-scores beyond chance (dotted: z = 2). The paper reports higher concentration in the
# first and last layers.

# %%
fig = auc.plot_auc_panels(numbers, title=f"{cfg['model']}:")
fig_name = "fig6b_auc_by_layer" if cfg["experiment"] == "vit" else "fig6c_auc_by_layer"
save_figure(fig, config.figure_path(cfg, fig_name), numbers)
update_json(config.headline_path(cfg), {"06_lorenz_auc": {"auc_frac": cfg["auc_frac"],
                                                          **auc.headline(numbers)}})
plt.show()

# %% [markdown]
# ### AUC against the selection fraction
# The same curves at every fraction of `auc_fracs`, each the mean over layers and subsets
# (random models: ± sd over seeds; chance: ± 2 sd of one random selection), and the trained
# curve's z beyond chance. A result near chance at one fraction (the paper's LM at 3.4%) reads
# differently if the trained curve leaves chance at another.

# %%
sweep = auc.fraction_sweep(labels, trained_scores, random_scores, k, cfg["auc_fracs"],
                           seed=cfg["seed"])
by_frac = auc.auc_vs_fraction(sweep)
print(auc.format_auc_vs_fraction(by_frac))
fig = auc.plot_auc_vs_fraction(by_frac, title=f"{cfg['model']}:", mark=cfg["auc_frac"])
save_figure(fig, config.figure_path(cfg, "06_auc_vs_fraction"), by_frac)
update_json(config.headline_path(cfg), {"06_auc_vs_fraction": auc.fraction_headline(by_frac)})
plt.show()

# %% [markdown]
# ### Gated MLPs: cluster on the gate or on up? (not in the paper)
# The same analysis with the clusters computed from the `gate_proj` rows instead of the
# `up_proj` rows, for the trained model and every random-init seed: if the selected neurons
# gather in gate clusters but not in up clusters, the paper's concentration finding depends on
# which matrix is clustered; if the random-init models' gate clusters gather them too, the
# effect is not learned. Models without a gate have nothing to compare.

# %%
if moe.is_gated(cfg):
    by_weight = auc.by_moe_weight(cfg, masks, k, ("up", "gate"), seed=cfg["seed"])
    print(auc.format_weight_comparison(by_weight))
    fig = auc.plot_weight_comparison(by_weight, title=f"{cfg['model']}:")
    save_figure(fig, config.figure_path(cfg, "06_auc_gate_vs_up"), by_weight)
    update_json(config.headline_path(cfg),
                {"06_auc_by_moe_weight": auc.weight_headline(by_weight)})
    plt.show()
else:
    print(f"{cfg['model']} has one input matrix per MLP (no gate): nothing to compare")

# %%
# NBVAL_CHECK_OUTPUT
# could fail: a trained model whose selected neurons do not gather in its own clusters, or
# random-model clusters that are not independent of the trained selection
z = {name: d["overall"] for name, d in numbers["z"].items()}
if cfg["experiment"] == "vit":
    print("trained clusters x trained neurons: mean AUC above the chance band (mean + 2 sd):",
          auc.above_chance(numbers))
    print("random clusters x trained neurons: within 2 sd of chance:", auc.near_chance(numbers))
else:  # the paper's LM result sits near chance: say how far, not a verdict
    for name in ("trained clusters x trained neurons", "random clusters x trained neurons"):
        print(f"{name}: z beyond chance = {z[name]:+.2f}")
