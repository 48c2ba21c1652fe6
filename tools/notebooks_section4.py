"""Cells of notebooks 04-07 (paper section 4: intersections, MoEfication, Lorenz AUC, and the
class-pair explorer). ``tools/build_notebooks.py`` adds the title, parameters and setup cells
(``cfg``, ``forget_names``, ``plt``, ``config``, ``update_json``, ``save_figure``) and writes
them. The work is done in ``modsep_utils``; these cells only call it and show the results.
"""
from __future__ import annotations

from build_notebooks import code, md, skip_without_weights  # noqa: F401  (one definition)


NB04 = [
    md("""## Intersections of the selected neurons (Figures 3, 4 and 5)
For subsets $i$ and $j$ with selected neuron sets $N_i$ and $N_j$, the overlap is

$$\\mathrm{overlap}(i, j) = \\frac{|N_i \\cap N_j|}{|N_i|},$$

the share of $i$'s neurons that $j$ also selected. It is not symmetric: a small $N_i$ inside a
large $N_j$ gives 100% one way and little the other. If the sets were drawn at random with
the same sizes, the expected overlap would be $|N_j| / N_{total}$ - the *chance* level,
reported beside every matrix.

Selections, as in the paper: the ViT experiment uses each class's own fraction found by
notebook 03 (Figure 3); the language model the top `overlap_frac` of neurons (Figure 4: 1%).
A class that notebook 03 could not bring to its target drop (its closest fraction is often
100%: the small ViT keeps much of its accuracy with every MLP neuron pruned) is selected at
`overlap_frac` instead and marked (!), since a full selection would overlap everything.
The randomly initialised model is given exactly the same fractions, so both models face the
same chance level. One random model is one draw of its weights, so there is one per seed of
`random_seeds`: the random model's numbers are the mean ± sd over those seeds, and the
figures show the first seed's matrix. Rows and columns are grouped by family (superclass or
text domain family), so related subsets sit together. A score-only profile
(`configs/authors/`) takes the authors' published scores and their one random-init model; its
ViT fractions come from the authors' own table at the first drop."""),
    code("""import numpy as np
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
    print("not reached in 03 (overlap_frac used, marked (!)):", selection["not_reached"])"""),
    code("""result = overlap.compare_seeds(masks["trained"], masks["random"], families)
print(overlap.format_summary(result["summary"]))"""),
    md("""### Figure %s: overlap matrices, trained and random model
Left: the trained model; right: the same architecture with random weights (the first seed;
its title gives the mean overlap over every seed, ± sd). Entry $(i, j)$ is the share of row
$i$'s neurons also selected for column $j$. The panel titles give the mean chance level.
The paper's claim is that the *pattern* - which pairs overlap more - is
already present in the random model (a weak lottery ticket): compare the two panels, and see
`r_excess` above, the correlation of the overlaps in excess of chance (the raw correlation
`r_trained_random` is inflated whenever the fractions differ between subsets, because a
large $N_j$ raises column $j$ in both models alike)."""
       % "3 (ViT) / 4 (LM)"),
    code("""labels = overlap.short_labels(names, selection["not_reached"])
fig = overlap.plot_overlaps(result["trained"], result["random"], labels,
                            chance=(result["chance_trained"], result["chance_random"]),
                            titles=overlap.panel_titles(result))
fig.suptitle(f"{model}: {selection['source']}", fontsize=9)
fig_name = "fig3_overlaps" if experiment == "vit" else "fig4_overlaps"
save_figure(fig, config.figure_path(cfg, fig_name), {**result, "fractions": fractions,
                                                      "selection": selection})
plt.show()"""),
    md("""### Figure 5: every pairwise overlap, trained against random
All off-diagonal pairs, sorted by the random model's overlap; the bars are trained - random,
the dotted line what chance gives each pair. Where the two series rise together, the random
model ranks pairs as the trained one does; the legend gives r, raw and beyond chance, for the
first seed, the title r beyond chance over every seed (mean ± sd)."""),
    code("""seeds = result["seeds"]
fig = overlap.plot_sorted_overlaps(
    result["trained"], result["random"],
    chance=(result["chance_trained"], result["chance_random"]),
    title=f"{model}: {selection['source']}\\nrandom init seed {seeds[0]} shown; r beyond chance "
          f"over seeds: {overlap.spread_text(result['summary'], 'r_excess')}")
save_figure(fig, config.figure_path(cfg, "fig5_sorted_overlaps"),
            {"pairs": overlap.offdiag_pairs(len(names)), "names": names,
             "trained": overlap.offdiag(result["trained"]),
             "random": overlap.offdiag(result["random"]), "random_seed": seeds[0],
             "random_by_seed": {s: overlap.offdiag(m) for s, m in result["random_by_seed"].items()},
             "summary": result["summary"]})
update_json(config.headline_path(cfg), {"04_overlaps": {
    **result["summary"], "selection": selection["source"], "fractions": fractions}})
plt.show()"""),
    code("""# NBVAL_CHECK_OUTPUT
# checks that could fail: the summary's mean overlap against the masks it summarises, counted
# again pair by pair (not through the matrix code); and whether the seeds reached the model
recomputed = {"trained": overlap.mean_pairwise_overlap(masks["trained"]),
              "random": np.mean([overlap.mean_pairwise_overlap(m)
                                 for m in masks["random"].values()])}
for kind, value in recomputed.items():
    print(f"{kind}: summary mean overlap = mean off-diagonal overlap recounted from the masks:",
          overlap.agrees(result["summary"][f"mean_{kind}"], value))
print("the random-init seeds select different neurons:",
      overlap.distinct(masks["random"].values()))"""),
    code("""# a score-only LM profile also draws the overlaps at 3.4%, the paper's mean Mistral fraction
for frac_ in authors.more_overlap_fractions(cfg):
    more = overlap.compare_seeds(
        overlap.masks_at(trained_scores, frac_),
        {s: overlap.masks_at(sc, frac_) for s, sc in random_scores.items()}, families)
    print(f"top {frac_:.1%} of neurons:")
    print(overlap.format_summary(more["summary"]))
    fig = overlap.plot_overlaps(more["trained"], more["random"], labels,
                                chance=(more["chance_trained"], more["chance_random"]),
                                titles=overlap.panel_titles(more))
    fig.suptitle(f"{model}: top {frac_:.1%} of neurons", fontsize=9)
    save_figure(fig, config.figure_path(cfg, f"fig4_overlaps_{frac_ * 100:g}pct"),
                {**more, "frac": frac_})
    update_json(config.headline_path(cfg), {f"04_overlaps_{frac_ * 100:g}pct": more["summary"]})
    plt.show()"""),
]

NB05 = [
    md("""## MoEfication: balanced clusters of neurons (section 2.3.2)
Per layer, the rows of $W_{in}$ (one per neuron: `fc1`/`intermediate.dense` for ViT,
`up_proj` for the gated LM) are L2-normalised and split by balanced k-means
(k-means-constrained, `size_min = size_max = d_mlp // k`, `random_state = 0`) into $k$
clusters of exactly `d_mlp // k` neurons, for the trained model and a random-init model per
seed of `random_seeds` (one random model is one draw of weights: the seeds show its spread).

**Which k.** The paper uses $k = 96$ for ViT-Base (3072 neurons, 32 per cluster) and
$k = 128$ for Mistral-7B (14336 neurons, 112 per cluster). Every profile keeps the paper's
*cluster size* (`moe_cluster_size`: 32 for ViT, 112 for the LM) and takes the $k$ dividing
the layer width whose cluster size is nearest to it (`moe.choose_k`; ties go to the smaller
clusters): the paper profile gets exactly 96 and 128 back; the embedded ViT (512 neurons)
gets 16 clusters of 32; SmolLM2 (1536 neurons) gets 16 clusters of 96 (128 would be as
far from 112; the smaller clusters win the tie). `moe_n_init` restarts (the authors' default
10; fewer on the embedded LM, see `bench/bench_moe.py`).

**Which rows.** In a gated MLP a neuron is `act(gate(x)) * up(x)`: the authors cluster the
`up_proj` rows (`moe_weight: up`), but whether the neuron fires is decided by its `gate_proj`
row. `moe_weight` picks `up`, `gate` or `gate_up` (both rows, each normalised, side by side);
models with one input matrix (ViT, GPT-2, BERT) ignore it. Notebook 06 compares `up` and `gate`
for gated models.

Labels are cached under `data/cache/moe/` by the content of the rows clustered and the
settings, so each choice is cached on its own and notebooks 06 and 07 reuse them."""),
    skip_without_weights("MoEfication clusters the rows of the model's W_in"),
    code("""from modsep_utils import moe, overlap

clusterings = moe.model_clusterings(cfg)  # trained, then one random-init model per seed
numbers = moe.summary(clusterings)
print(moe.format_summary(numbers))"""),
    md("""### Quality and cost per layer
Within-cluster sum of squares of the normalised rows, divided by that of a random balanced
assignment (the mean of three): below 1 the clusters are tighter than chance; the random-init
models (one line per seed) show how much of that a structureless model gets. Right: the
seconds each layer took when it was clustered (the time recorded in the cache)."""),
    code("""fig = moe.plot_quality(numbers)
fig.suptitle(f"{model}: balanced k-means of W_in rows", fontsize=9)
save_figure(fig, config.figure_path(cfg, "05_moefication"),
            {**numbers, "random_over_seeds": moe.random_spread(numbers)})
update_json(config.headline_path(cfg), {"05_moefication": {
    "moe_weight": clusterings["trained"].meta["weight"], **moe.headline(numbers)}})
plt.show()"""),
    code("""# NBVAL_CHECK_OUTPUT
# checks that could fail (balanced sizes are the solver's contract, checked as it clusters)
print("trained: tighter than a random balanced assignment in every layer:",
      moe.tighter_than_random(numbers)["trained"])
print("trained: tighter than every random-init model in every layer:",
      moe.tighter_than_random_models(numbers))
print("the random-init seeds give different clusterings:",
      overlap.distinct([c.labels for c in clusterings.values() if c.meta["random_init"]]))"""),
]

NB06 = [
    md("""## Do the selected neurons fall into few clusters? (Figure 6)
Here the selection takes the same fraction `auc_frac` of *every layer* (a global top-k can pile
the neurons into a few layers, leaving others empty). For one layer, count the selected
neurons in each MoEfication cluster, sort the counts in descending order and accumulate: the
Lorenz curve $S_j$, the share held by the $j$ fullest clusters (Figure 6a).

Its normalised area, two variants:

- **exact**: $A = \\frac{1}{k_{eff} - 1} \\sum_{j=1}^{k_{eff}-1} S_j$ with $k_{eff} = \\min(N, k)$:
  exactly 1.0 when all $N$ selected neurons share a cluster and 0.5 when they are spread
  evenly (with fewer neurons than clusters, one per cluster is the most even possible,
  hence $k_{eff}$);
- **authors**: the authors' left Riemann sum `sum(c[:x]) / (c[x] * x)`, $x = \\min(N, k)$,
  which gives $(k-1)/(2k)$ for an even spread; use it to compare with the paper's figure.

No selected neuron gives no curve (NaN, never a number). Chance is well above 0.5 for small
selections, so every figure shows a random selection of the same size (chance, with a band
of ± 2 sd of one random selection's area) and the most concentrated selection the cluster
sizes allow (best achievable). How far an area lies beyond chance is its z-score,
$z = (A - \\bar A_{chance}) / \\mathrm{sd}(A_{chance})$, from 200 random selections of the same
size per layer. The random-model curves are computed for every seed of `random_seeds`."""),
    skip_without_weights("the Lorenz curves need MoEfication clusters of the model's weights"),
    code("""from modsep_utils import auc, moe, overlap

trained_scores, random_scores = overlap.seed_scores(cfg, forget_names)  # random: {seed: scores}
clusterings = moe.model_clusterings(cfg)  # notebook 05's labels, from the cache
labels = moe.labels_by_seed(clusterings)  # {"trained": labels, "random": {seed: labels}}
k = clusterings["trained"].k
masks = auc.selections(trained_scores, random_scores, auc_frac)
tables = auc.seed_tables(labels, masks, k, seed=seed)
table = tables[list(tables)[0]]  # the first seed's: the default random model
numbers = auc.seeds_summary(tables)
print(f"{auc_frac:.1%} of every layer = {table['n_selected'][0][0]} neurons per layer; "
      f"k = {k} clusters of {table['cluster_size']}; clusterings read from the cache: "
      f"{all(c.from_cache.all() for c in clusterings.values())}")
print(auc.format_seeds_summary(numbers))"""),
    md("""### Figure 6a: one Lorenz curve
The first subset, in the layer where the trained model's selections are most concentrated on
average."""),
    code("""layer = auc.most_concentrated_layer(table)
subset = forget_names[0]
curves, aucs = auc.example_curves(auc.one_seed(labels), auc.one_seed(masks), subset, layer, k,
                                  seed=seed)
fig = auc.plot_lorenz(curves, aucs, title=f"{model}: {subset}, layer {layer}, "
                      f"{auc_frac:.1%} of the layer")
save_figure(fig, config.figure_path(cfg, "fig6a_lorenz_example"),
            {"subset": subset, "layer": layer, "curves": curves, "aucs": aucs})
plt.show()"""),
    md("""### Figure 6%s: AUC by layer
Trained clusters × trained neurons (mean ± sd over subsets), random-model clusters ×
random-model neurons and random-model clusters × trained neurons (does the trained selection
concentrate even in clusters it was not trained with?), each the mean over subsets, ± sd over
the random seeds; chance (± 2 sd of one random selection) and the best achievable. Right: the
same as z-scores beyond chance (dotted: z = 2). The paper reports higher concentration in the
first and last layers.""" % "b (ViT) / 6c (LM)"),
    code("""fig = auc.plot_auc_panels(numbers, title=f"{model}:")
fig_name = "fig6b_auc_by_layer" if experiment == "vit" else "fig6c_auc_by_layer"
save_figure(fig, config.figure_path(cfg, fig_name), numbers)
update_json(config.headline_path(cfg), {"06_lorenz_auc": {"auc_frac": auc_frac,
                                                          **auc.headline(numbers)}})
plt.show()"""),
    md("""### AUC against the selection fraction
The same curves at every fraction of `auc_fracs`, each the mean over layers and subsets
(random models: ± sd over seeds; chance: ± 2 sd of one random selection), and the trained
curve's z beyond chance. A result near chance at one fraction (the paper's LM at 3.4%) reads
differently if the trained curve leaves chance at another."""),
    code("""sweep = auc.fraction_sweep(labels, trained_scores, random_scores, k, auc_fracs,
                           seed=seed)
by_frac = auc.auc_vs_fraction(sweep)
print(auc.format_auc_vs_fraction(by_frac))
fig = auc.plot_auc_vs_fraction(by_frac, title=f"{model}:", mark=auc_frac)
save_figure(fig, config.figure_path(cfg, "06_auc_vs_fraction"), by_frac)
update_json(config.headline_path(cfg), {"06_auc_vs_fraction": auc.fraction_headline(by_frac)})
plt.show()"""),
    md("""### Gated MLPs: cluster on the gate or on up? (not in the paper)
The same analysis with the clusters computed from the `gate_proj` rows instead of the
`up_proj` rows, for the trained model and every random-init seed: if the selected neurons
gather in gate clusters but not in up clusters, the paper's concentration finding depends on
which matrix is clustered; if the random-init models' gate clusters gather them too, the
effect is not learned. Models without a gate have nothing to compare."""),
    code("""if moe.is_gated(cfg):
    by_weight = auc.by_moe_weight(cfg, masks, k, ("up", "gate"), seed=seed)
    print(auc.format_weight_comparison(by_weight))
    fig = auc.plot_weight_comparison(by_weight, title=f"{model}:")
    save_figure(fig, config.figure_path(cfg, "06_auc_gate_vs_up"), by_weight)
    update_json(config.headline_path(cfg),
                {"06_auc_by_moe_weight": auc.weight_headline(by_weight)})
    plt.show()
else:
    print(f"{model} has one input matrix per MLP (no gate): nothing to compare")"""),
    code("""# NBVAL_CHECK_OUTPUT
# could fail: a trained model whose selected neurons do not gather in its own clusters, or
# random-model clusters that are not independent of the trained selection
z = {name: d["overall"] for name, d in numbers["z"].items()}
if experiment == "vit":
    print("trained clusters x trained neurons: mean AUC above the chance band (mean + 2 sd):",
          auc.above_chance(numbers))
    print("random clusters x trained neurons: within 2 sd of chance:", auc.near_chance(numbers))
else:  # the paper's LM result sits near chance: say how far, not a verdict
    for name in ("trained clusters x trained neurons", "random clusters x trained neurons"):
        print(f"{name}: z beyond chance = {z[name]:+.2f}")"""),
]

NB07 = [
    md("""## Explore a pair of classes
Pick the model (trained or random), two subsets A and B, and the fraction of neurons
selected. Shown: the accuracy effect of pruning A's neurons on B and B's on A (from notebook
03's cross-evaluation, at each subset's own fraction; the random model has none), the overlap
$|A \\cap B|/|A|$ and $|A \\cap B|/|B|$ by layer against chance, and how the shared neurons
fall into MoEfication clusters (notebook 05). By default each class is selected at its own
fraction from notebook 03 (ViT), or at `overlap_frac` (LM), as in notebook 04; untick the box
to use the slider's fraction for both.

The experiment is fixed by this notebook's parameters (run it with `--experiment lm` for the
language model). Headless (papermill, nbval) the first selection is drawn once as a static
figure; in a live kernel the controls redraw it. (The views are display handles rather than
an `Output` widget: headless, nbclient mimics an `Output` widget by sending comm messages on
the kernel's shell channel, and papermill runs of such a notebook hung here now and then -
nbclient issue #312.)"""),
    skip_without_weights("the explorer needs the cross-evaluation and clusters of the model"),
    code("""import ipywidgets as widgets
from IPython.display import Pretty, display
from modsep_utils import data, explore

ex = explore.Explorer.from_config(cfg, forget_names)
first_a, first_b = explore.default_pair(ex.names, data.family_of)

kind_w = widgets.Dropdown(options=ex.kinds, value="trained", description="model")
a_w = widgets.Dropdown(options=ex.names, value=first_a, description="class A")
b_w = widgets.Dropdown(options=ex.names, value=first_b, description="class B")
frac_w = widgets.FloatSlider(value=ex.default_frac, min=0.001, max=0.5, step=0.001,
                             readout_format=".1%", description="fraction")
own_w = widgets.Checkbox(value=ex.fractions is not None, disabled=ex.fractions is None,
                         description="each class at its 03 fraction")
display(widgets.VBox([widgets.HBox([kind_w, a_w, b_w]), widgets.HBox([frac_w, own_w])]))"""),
    code("""def select():
    \"\"\"The report and figure of what the controls show now.\"\"\"
    own = own_w.value and ex.fractions is not None
    report = ex.report(kind_w.value, a_w.value, b_w.value, None if own else frac_w.value)
    return report, explore.plot_pair(report)


# the first selection, drawn by a direct call (not a widget callback), so that it renders
# headless; in a live kernel, on_change redraws the same two views
report, fig = select()
save_figure(fig, config.figure_path(cfg, "07_pair_example"), report)
text_view = display(Pretty(explore.format_report(report)), display_id=True)
figure_view = display(fig, display_id=True)
plt.close(fig)


def on_change(_change):
    report, fig = select()
    text_view.update(Pretty(explore.format_report(report)))
    figure_view.update(fig)
    plt.close(fig)


for control in (kind_w, a_w, b_w, frac_w, own_w):
    control.observe(on_change, names="value")"""),
    code("""# NBVAL_CHECK_OUTPUT
print("first selection:", first_a, "vs", first_b)
print("shared neurons by layer add up to the total:",
      sum(report["n_shared"]) == report["total"]["n_shared"])
print("random model: cross-evaluation reported missing, not invented:",
      ex.report("random", first_a, first_b)["a_to_b"] is None)"""),
]

NOTEBOOKS = [
    ("04_intersections.ipynb", "# 04 · Intersections\nOverlaps of the neurons selected for "
     "different subsets, trained vs random model (Figures 3-5).", NB04),
    ("05_moefication.ipynb", "# 05 · MoEfication\nBalanced k-means clusters of neurons, "
     "trained and random model.", NB05),
    ("06_auc.ipynb", "# 06 · Lorenz curves and AUC\nHow concentrated the selected neurons are "
     "in MoEfication clusters (Figure 6).", NB06),
    ("07_explore_pairs.ipynb", "# 07 · Explore class pairs\nA widget over the results of "
     "notebooks 03-05 for any two subsets.", NB07),
]
