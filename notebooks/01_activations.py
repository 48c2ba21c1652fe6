# %% [markdown]
# # 01 · Activations
# Streaming neuron statistics for the trained and the random model.
#
# **The README's results**, this notebook executed with the `embedded` profile (committed in
# `reports/embedded/`): [ViT](../reports/embedded/vit/01_activations.ipynb) · [LM](../reports/embedded/lm/01_activations.ipynb).
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
# ## Neuron statistics
# A *neuron* is one coordinate of the input to an MLP's output projection (after the activation;
# for gated MLPs `act(gate(x)) * up(x)`). A forward pre-hook streams, for every layer and neuron,
# the token count, sum |x|, sum x, sum x² and the count of x > 0 over every token position, in
# float64. No per-token activation is kept, so memory does not grow with the data.
#
# We collect them on the *collection* split of every forget subset and of the retain set, for the
# trained model and for a randomly initialised copy (same config, fixed seed), which sections 4-5
# of the paper compare against (one per seed in `random_seeds`: every random baseline is
# shown with its spread over seeds). Each collection split is collected in two disjoint halves,
# whose exact merge is the whole: notebook 02 scores each half separately to measure how
# reproducible the scores are. Results are cached by the content of their inputs (model
# weights, data, code version and every parameter).

# %%
from modsep_utils import authors

authors.skip_rest_if_score_only(cfg, "neuron statistics need the model")

# %%
from modsep_utils import activations

trained, retain_trained = activations.all_stats(cfg, forget_names, random_init=False)
random, retain_random = activations.all_stats(cfg, forget_names, random_init=True)
for seed_ in activations.random_seeds(cfg)[1:]:  # the other random-init models
    activations.all_stats(cfg, forget_names, random_init=True, model_seed=seed_)
tokens = {name: int(s.count[0]) for name, s in trained.items()}
print("tokens (or image patches) per subset:", tokens)

# %% [markdown]
# ### Where activity sits
# Mean |activation| per layer, relative to the mean over subsets: which layers respond more to
# which subset, in the trained and in the random model.

# %%
fig, numbers = activations.plot_layer_profile(trained, random)
save_figure(fig, config.figure_path(cfg, "01_activation_profile"), numbers)
update_json(config.headline_path(cfg), {"01_tokens_per_subset": tokens})
plt.show()
