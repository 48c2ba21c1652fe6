# %% [markdown]
# # 03 · Selective pruning
# Figures 1 (ViT) and 2 (LM).
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/03_pruning.ipynb) · [LM](../reports/embedded/lm/03_pruning.ipynb).
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
# ## Selective pruning (Figures 1 and 2)
# For each forget subset, a search finds the fraction of top-scored neurons whose removal drops
# the subset's accuracy to the target: accepted when
# `target - 2pp <= accuracy <= target`, target = (1 - drop) × unpruned, as the authors did.
# Accuracy need not fall monotonically as more neurons go, so the search first *brackets* (walks
# up the grid `bisect_grid` to the first fraction at or below the target), then bisects inside
# that bracket. Every candidate is applied to the unpruned model (hooks are removed between
# candidates), and accuracy is measured on the *evaluation* split, disjoint from the text or
# images the scores were collected on, document by document (the authors' evaluation overlapped
# their collection data).
#
# Every accuracy carries its standard error over independent items (text blocks, images,
# questions); pruned and unpruned accuracies are measured on the same items, so their
# difference has a *paired* standard error, much smaller than either alone.
#
# Then each forget subset's pruned model is evaluated on every subset: pruned / unpruned
# accuracy. Subsets that no fraction brings into the window are marked (!) and reported, never
# given a placeholder value.
#
# A score-only profile (`configs/authors/`) has no model to prune: it draws the authors' own
# published tables in the same style instead, their headline numbers computed by the same
# summary code (`modsep_utils.authors`).

# %%
from modsep_utils import authors

if authors.is_score_only(cfg):
    print(authors.show_cross_eval(cfg))
    authors.skip_rest_if_score_only(cfg, "the search and the cross-evaluation need the model")

# %%
from modsep_utils import activations, pruning, scoring

trained, retain_trained = activations.all_stats(cfg, forget_names, random_init=False)
scores = scoring.all_scores(trained, retain_trained, cfg["eps"])
evaluator = pruning.Evaluator(cfg, *activations.get_model(cfg["model"], False, cfg["seed"], cfg["dtype"]))
eval_names = config.eval_names(cfg)
base = {name: evaluator(name) for name in eval_names}
for name, m in base.items():
    print(f"unpruned {name:24s} {m['accuracy']:.3f} ± {m['se']:.3f} ({m['n']} predictions)")

# %% [markdown]
# ### Multiple choice: which format?
# The authors scored MMLU zero-shot by whether the top-1 next token is the gold letter. A small
# model can sit near chance on that format while knowing the answers, so both scorings are
# measured on the unpruned model; the profile's `mc_method` is used for the cross-evaluation.

# %%
mc_names = [n for n in eval_names if pruning.subset_kind(n) == "mc"]
if mc_names:
    mc = pruning.compare_mc_methods(evaluator, mc_names)
    update_json(config.headline_path(cfg), {"03_multiple_choice_formats": mc})
    print(f"chance {mc['chance']:.2f}; letter format {mc['letter']['pooled']:.3f} ± "
          f"{mc['letter']['pooled_se']:.3f}; log-likelihood {mc['loglik']['pooled']:.3f} ± "
          f"{mc['loglik']['pooled_se']:.3f} (all questions pooled); used: {mc['used']}")
else:
    print("no multiple-choice subsets in this experiment")

# %%
from modsep_utils.io import write_json

results, matrices, searches = {}, {}, {}  # by drop label, e.g. "50%"
for drop in cfg["drops"]:
    label = pruning.drop_label(drop)
    fractions = pruning.selection_fractions(evaluator, scores, drop)
    matrix = pruning.cross_eval_matrix(evaluator, scores, fractions, eval_names)
    results[label] = pruning.summarize(fractions, matrix)
    matrices[label], searches[label] = matrix, fractions
    pruning.save_fractions(cfg, drop, fractions)
    write_json(pruning.step03_path(cfg, "cross_eval", drop), matrix)
    for name, f in fractions.items():
        flag = "" if f["reached"] else f"  NOT REACHED: {f['note']}"
        print(f"{label} {name:24s} {f['frac']:7.2%} of neurons -> accuracy {f['accuracy']:.3f}"
              f" (target {f['target']:.3f}; drop {-f['paired']['diff']:.3f} ± "
              f"{f['paired']['diff_se']:.3f} paired){flag}")

# %% [markdown]
# ### Accuracy against the fraction pruned (not in the paper)
# Every point the search measured, per subset: how accuracy falls as more top-scored neurons
# are removed, the target window of each drop (band) and the fraction chosen (circled; red when
# the target was not reached).

# %%
fig, numbers = pruning.plot_search_curves(searches)
save_figure(fig, config.figure_path(cfg, "03_search_curves"), numbers)
plt.show()

# %% [markdown]
# ### Figure: pruned / unpruned accuracy
# Columns: the subset whose neurons were pruned; rows: the subset evaluated. The diagonal is the
# targeted drop; off-diagonal cells show how much the other subsets suffer. Small grey numbers:
# the paired standard error of each cell (percentage points). The headline means in each
# panel's title are over the columns that reached the target, with bootstrap 95% intervals over
# subsets.

# %%
fig = pruning.plot_cross_eval(matrices, results, title=f"{cfg['model']}:")
fig_name = "fig1_cross_eval" if cfg["experiment"] == "vit" else "fig2_cross_eval"
save_figure(fig, config.figure_path(cfg, fig_name), {"matrices": matrices, "summaries": results})
plt.show()

# %% [markdown]
# ### Headline numbers, next to the paper's

# %%
import json

headline = pruning.headline(cfg["experiment"], results)
update_json(config.headline_path(cfg), {"03_selective_pruning": headline})
print(pruning.format_headline(headline))

# %%
# NBVAL_CHECK_OUTPUT
# the headline agrees with the matrix it summarises (recomputed by a separate loop), and the
# saved fractions read back with this run's parameters
for drop in cfg["drops"]:
    label = pruning.drop_label(drop)
    print(label, "headline agrees with its matrix:",
          pruning.headline_agrees(results[label], matrices[label], searches[label]))
    print(label, "saved fractions match this run:",
          pruning.load_fractions(cfg, drop) == json.loads(json.dumps(searches[label])))
# the key numbers equal the committed ones within 0.02 (results/expected/<profile>_<experiment>.json;
# CI runs the smoke ViT profile, whose numbers are committed)
from modsep_utils import reproduction
same = reproduction.matches_expected(cfg["profile"], cfg["experiment"], "03_selective_pruning", headline)
print("key numbers match the committed ones:",
      "no committed numbers for this profile" if same is None else same)
