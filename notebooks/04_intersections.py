# %% [markdown]
# # 04 · Intersections
# Overlaps of the neurons selected for different subsets, trained vs random model (Figures 3-5).
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/04_intersections.ipynb) · [LM](../reports/embedded/lm/04_intersections.ipynb).
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
# ## Intersections of the selected neurons (Figures 3, 4 and 5)
# For subsets $i$ and $j$ with selected neuron sets $N_i$ and $N_j$, the overlap is
#
# $$\mathrm{overlap}(i, j) = \frac{|N_i \cap N_j|}{|N_i|},$$
#
# the share of $i$'s neurons that $j$ also selected. It is not symmetric: a small $N_i$ inside a
# large $N_j$ gives 100% one way and little the other. If the sets were drawn at random with
# the same sizes, the expected overlap would be $|N_j| / N_{total}$ - the *chance* level,
# reported beside every matrix.
#
# Selections, as in the paper: the ViT experiment uses each class's own fraction found by
# notebook 03 (Figure 3); the language model the top `overlap_frac` of neurons (Figure 4: 1%).
# A class that notebook 03 could not bring to its target drop (its closest fraction is often
# 100%: the small ViT keeps much of its accuracy with every MLP neuron pruned) is selected at
# `overlap_frac` instead and marked (!), since a full selection would overlap everything.
# The randomly initialised model is given exactly the same fractions, so both models face the
# same chance level. One random model is one draw of its weights, so there is one per seed of
# `random_seeds`: the random model's numbers are the mean ± sd over those seeds, and the
# figures show the first seed's matrix. Rows and columns are grouped by family (superclass or
# text domain family), so related subsets sit together. A score-only profile
# (`configs/authors/`) takes the authors' published scores and their one random-init model; its
# ViT fractions come from the authors' own table at the first drop.

# %%
import numpy as np
from modsep_utils import authors, data, overlap

names = overlap.order_by_family(forget_names, data.family_of)
families = [data.family_of(n) for n in names]
if authors.is_score_only(cfg):  # the authors' scores; ViT: their table's fractions
    fractions, selection = authors.selection_fractions(cfg, names)
    trained_scores, random_scores = authors.seed_scores(cfg, names)
else:
    fractions, selection = overlap.selection_fractions(cfg, names)  # ViT: needs notebook 03
    trained_scores, random_scores = overlap.seed_scores(cfg, names)  # random: {seed: scores}
masks = {"trained": overlap.masks_at(trained_scores, fractions),
         "random": {s: overlap.masks_at(sc, fractions) for s, sc in random_scores.items()}}
print("random-init models: seeds", list(random_scores))
print("selection:", selection["source"])
for n, fam in zip(names, families):
    print(f"  {n:24s} {fractions[n]:7.2%} of neurons  ({fam})")
if selection["not_reached"]:
    print("not reached in 03 (overlap_frac used, marked (!)):", selection["not_reached"])

# %%
result = overlap.compare_seeds(masks["trained"], masks["random"], families)
print(overlap.format_summary(result["summary"]))

# %% [markdown]
# ### Figure 3 (ViT) / 4 (LM): overlap matrices, trained and random model
# Left: the trained model; right: the same architecture with random weights (the first seed;
# its title gives the mean overlap over every seed, ± sd). Entry $(i, j)$ is the share of row
# $i$'s neurons also selected for column $j$. The panel titles give the mean chance level.
# The paper's claim is that the *pattern* - which pairs overlap more - is
# already present in the random model (a weak lottery ticket): compare the two panels, and see
# `r_excess` above, the correlation of the overlaps in excess of chance (the raw correlation
# `r_trained_random` is inflated whenever the fractions differ between subsets, because a
# large $N_j$ raises column $j$ in both models alike).

# %%
labels = overlap.short_labels(names, selection["not_reached"])
fig = overlap.plot_overlaps(result["trained"], result["random"], labels,
                            chance=(result["chance_trained"], result["chance_random"]),
                            titles=overlap.panel_titles(result))
fig.suptitle(f"{cfg['model']}: {selection['source']}", fontsize=9)
fig_name = "fig3_overlaps" if cfg["experiment"] == "vit" else "fig4_overlaps"
save_figure(fig, config.figure_path(cfg, fig_name), {**result, "fractions": fractions,
                                                      "selection": selection})
plt.show()

# %% [markdown]
# ### Figure 5: every pairwise overlap, trained against random
# All off-diagonal pairs, sorted by the random model's overlap; the bars are trained - random,
# the dotted line what chance gives each pair. Where the two series rise together, the random
# model ranks pairs as the trained one does; the legend gives r, raw and beyond chance, for the
# first seed, the title r beyond chance over every seed (mean ± sd).

# %%
seeds = result["seeds"]
fig = overlap.plot_sorted_overlaps(
    result["trained"], result["random"],
    chance=(result["chance_trained"], result["chance_random"]),
    title=f"{cfg['model']}: {selection['source']}\nrandom init seed {seeds[0]} shown; r beyond chance "
          f"over seeds: {overlap.spread_text(result['summary'], 'r_excess')}")
save_figure(fig, config.figure_path(cfg, "fig5_sorted_overlaps"),
            {"pairs": overlap.offdiag_pairs(len(names)), "names": names,
             "trained": overlap.offdiag(result["trained"]),
             "random": overlap.offdiag(result["random"]), "random_seed": seeds[0],
             "random_by_seed": {s: overlap.offdiag(m) for s, m in result["random_by_seed"].items()},
             "summary": result["summary"]})
update_json(config.headline_path(cfg), {"04_overlaps": {
    **result["summary"], "selection": selection["source"], "fractions": fractions}})
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
# checks that could fail: the summary's mean overlap against the masks it summarises, counted
# again pair by pair (not through the matrix code); and whether the seeds reached the model
recomputed = {"trained": overlap.mean_pairwise_overlap(masks["trained"]),
              "random": np.mean([overlap.mean_pairwise_overlap(m)
                                 for m in masks["random"].values()])}
for kind, value in recomputed.items():
    print(f"{kind}: summary mean overlap = mean off-diagonal overlap recounted from the masks:",
          overlap.agrees(result["summary"][f"mean_{kind}"], value))
print("the random-init seeds select different neurons:",
      overlap.distinct(masks["random"].values()))

# %%
# a score-only LM profile also draws the overlaps at 3.4%, the paper's mean Mistral fraction
for frac_ in authors.more_overlap_fractions(cfg):
    more = overlap.compare_seeds(
        overlap.masks_at(trained_scores, frac_),
        {s: overlap.masks_at(sc, frac_) for s, sc in random_scores.items()}, families)
    print(f"top {frac_:.1%} of neurons:")
    print(overlap.format_summary(more["summary"]))
    fig = overlap.plot_overlaps(more["trained"], more["random"], labels,
                                chance=(more["chance_trained"], more["chance_random"]),
                                titles=overlap.panel_titles(more))
    fig.suptitle(f"{cfg['model']}: top {frac_:.1%} of neurons", fontsize=9)
    save_figure(fig, config.figure_path(cfg, f"fig4_overlaps_{frac_ * 100:g}pct"),
                {**more, "frac": frac_})
    update_json(config.headline_path(cfg), {f"04_overlaps_{frac_ * 100:g}pct": more["summary"]})
    plt.show()
