# %% [markdown]
# # 07 · Explore class pairs
# A widget over the results of notebooks 03-05 for any two subsets.
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/07_explore_pairs.ipynb) · [LM](../reports/embedded/lm/07_explore_pairs.ipynb).
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
# ## Explore a pair of classes
# Pick the model (trained or random), two subsets A and B, and the fraction of neurons
# selected. Shown: the accuracy effect of pruning A's neurons on B and B's on A (from notebook
# 03's cross-evaluation, at each subset's own fraction; the random model has none), the overlap
# $|A \cap B|/|A|$ and $|A \cap B|/|B|$ by layer against chance, and how the shared neurons
# fall into MoEfication clusters (notebook 05). By default each class is selected at its own
# fraction from notebook 03 (ViT), or at `overlap_frac` (LM), as in notebook 04; untick the box
# to select both at the slider's fraction. The slider moves the overlap and cluster panels and
# the title; the cross-evaluation bars are 03's measurements at 03's fractions and stay.
#
# The controls need a running kernel (run the notebook in JupyterLab); without one, the report
# and figure of the first selection stand below the cell as saved. The wiring is
# `modsep_utils.explore.PairView`.

# %%
from modsep_utils import authors

authors.skip_rest_if_score_only(cfg, "the explorer needs the cross-evaluation and clusters of the model")

# %%
from modsep_utils import data, explore

ex = explore.Explorer.from_config(cfg, forget_names)
view = ex.widget(family=data.family_of)  # the controls; under them the report and the figure
save_figure(view.figure, config.figure_path(cfg, "07_pair_example"), view.report)
view

# %%
# NBVAL_CHECK_OUTPUT
report = view.report
print("first selection:", report["a"], "vs", report["b"])
print("shared neurons by layer add up to the total:",
      sum(report["n_shared"]) == report["total"]["n_shared"])
print("random model: cross-evaluation reported missing, not invented:",
      ex.report("random", report["a"], report["b"])["a_to_b"] is None)
