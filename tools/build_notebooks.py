"""Write notebooks/NN_*.ipynb from the cell sources below (outputs are filled in by running
them: ``python -m modsep_utils.run --profile smoke`` or papermill in place).

The parameters cell of every notebook is generated from configs/smoke/vit.yaml, so the
committed defaults are the cheap CI size and never drift from the profile files.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parameters_source() -> str:
    from modsep_utils.config import load_profile
    cfg = load_profile("smoke", "vit")
    lines = ["# Parameters (papermill). Defaults: the smoke profile, ViT experiment.",
             "# Profiles: configs/<profile>/<experiment>.yaml; run them all with",
             "#   python -m modsep_utils.run --profile embedded"]
    lines += [f"{k} = {v!r}" for k, v in cfg.items()]
    return "\n".join(lines)


SETUP = """\
%matplotlib inline
import matplotlib.pyplot as plt
from modsep_utils import config
from modsep_utils.io import update_json
from modsep_utils.plots import save_figure

cfg = config.from_parameters(globals())
forget_names = config.subset_list(forget)
print(f"{profile}/{experiment}: model {model}, {len(forget_names)} forget subsets, retain = {retain}")"""


def md(s):
    return nbformat.v4.new_markdown_cell(s)


def code(s, tags=()):
    c = nbformat.v4.new_code_cell(s)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def skip_without_weights(why: str):
    """A cell that, in a score-only profile (the authors' published data, no weights), says so
    in one line and skips the rest of the notebook (modsep_utils.authors)."""
    return code(f"""from modsep_utils import authors

authors.skip_rest_if_score_only(cfg, "{why}")""")


def build(name: str, title: str, cells: list) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [md(title), code(parameters_source(), tags=["parameters"]), code(SETUP)] + cells
    nbformat.write(nb, ROOT / "notebooks" / name)


NB01 = [
    md("""## Neuron statistics
A *neuron* is one coordinate of the input to an MLP's output projection (after the activation;
for gated MLPs `act(gate(x)) * up(x)`). A forward pre-hook streams, for every layer and neuron,
the token count, sum |x|, sum x, sum x² and the count of x > 0 over every token position, in
float64. No per-token activation is kept, so memory does not grow with the data.

We collect them on the *collection* split of every forget subset and of the retain set, for the
trained model and for a randomly initialised copy (same config, fixed seed), which sections 4-5
of the paper compare against (one per seed in `random_seeds`: every random baseline is
shown with its spread over seeds). Each collection split is collected in two disjoint halves,
whose exact merge is the whole: notebook 02 scores each half separately to measure how
reproducible the scores are. Results are cached by the content of their inputs (model
weights, data, code version and every parameter)."""),
    skip_without_weights("neuron statistics need the model"),
    code("""from modsep_utils import activations

trained, retain_trained = activations.all_stats(cfg, forget_names, random_init=False)
random, retain_random = activations.all_stats(cfg, forget_names, random_init=True)
for seed_ in activations.random_seeds(cfg)[1:]:  # the other random-init models
    activations.all_stats(cfg, forget_names, random_init=True, model_seed=seed_)
tokens = {name: int(s.count[0]) for name, s in trained.items()}
print("tokens (or image patches) per subset:", tokens)"""),
    md("""### Where activity sits
Mean |activation| per layer, relative to the mean over subsets: which layers respond more to
which subset, in the trained and in the random model."""),
    code("""fig, numbers = activations.plot_layer_profile(trained, random)
save_figure(fig, config.figure_path(cfg, "01_activation_profile"), numbers)
update_json(config.headline_path(cfg), {"01_tokens_per_subset": tokens})
plt.show()"""),
]

NB02 = [
    md("""## Scoring: how specific is each neuron to a subset?
For a forget subset $D_u$ and the retain set $D_r$, the score of neuron $n$ is

$$S_n = \\frac{\\mathrm{mean}_{D_u} |n(x)|}{\\epsilon + \\mathrm{mean}_{D_r} |n(x)|}, \\quad \\epsilon = 10^{-3}$$

(the paper's Eq. 1 prints the ratio upside down; the authors' code, and the meaning "important
for $D_u$", is forget over retain). Neurons are then selected by one global top-k over all
layers together. A score-only profile (`configs/authors/`) takes the authors' published
scores instead (`modsep_utils.authors`)."""),
    code("""from modsep_utils import activations, authors, scoring

if authors.is_score_only(cfg):  # the authors' published scores: no weights, no statistics
    print(authors.describe_scores(experiment))
    scores_trained, scores_random = authors.scores_for(cfg, forget_names)
else:
    trained, retain_trained = activations.all_stats(cfg, forget_names, random_init=False)
    random, retain_random = activations.all_stats(cfg, forget_names, random_init=True)
    scores_trained = scoring.all_scores(trained, retain_trained, eps)
    scores_random = scoring.all_scores(random, retain_random, eps)
for name, s in scores_trained.items():
    print(f"{name:24s} score max {s.max():7.2f}  median {s.median():5.2f}")"""),
    md("""### Where the top neurons sit
Share of the top-scored neurons (global selection) in each layer, mean ± std over subsets,
for the trained and the random model."""),
    code("""fig, numbers = scoring.plot_top_layers(scores_trained, scores_random, overlap_frac)
save_figure(fig, config.figure_path(cfg, "02_top_neurons_by_layer"), numbers)
update_json(config.headline_path(cfg), {"02_top_share_by_layer": {
    "frac": overlap_frac, "trained": numbers["trained"]["mean"], "random": numbers["random"]["mean"]}})
plt.show()"""),
    skip_without_weights("split-half reliability needs the statistics of two halves, which the "
                         "authors did not publish"),
    md("""### How reproducible are the scores? (not in the paper)
Every collection split was gathered in two disjoint halves. Scoring each half on its own
(against the matching half of the retain set) and comparing gives the split-half reliability:
the rank correlation of all scores, and the Jaccard index of the two top-`overlap_frac`
selections against its chance level. A low Jaccard means that the selected neurons depend on
which text or images happened to be collected: more collection data would change them."""),
    code("""reliability = scoring.split_half_reliability(
    activations.all_half_stats(cfg, forget_names, random_init=False), overlap_frac, eps)
fig = scoring.plot_reliability(reliability)
save_figure(fig, config.figure_path(cfg, "02_split_half_reliability"), reliability)
summary = scoring.reliability_summary(reliability)
update_json(config.headline_path(cfg), {"02_split_half_reliability": summary})
print(f"split-half rank correlation {summary['spearman_mean']:.3f} (min "
      f"{summary['spearman_min']:.3f}); top-{overlap_frac:.1%} Jaccard "
      f"{summary['jaccard_mean']:.3f} (min {summary['jaccard_min']:.3f}, chance "
      f"{summary['chance_jaccard']:.3f})")
plt.show()"""),
    code("""# NBVAL_CHECK_OUTPUT
# the two halves agree far beyond chance (could fail: too little collection data)
print("top-k selections agree beyond chance in every subset:",
      summary["jaccard_min"] > 2 * summary["chance_jaccard"])"""),
]

NB03 = [
    md("""## Selective pruning (Figures 1 and 2)
For each forget subset, a search finds the fraction of top-scored neurons whose removal drops
the subset's accuracy to the target: accepted when
`target - 2pp <= accuracy <= target`, target = (1 - drop) × unpruned, as the authors did.
Accuracy need not fall monotonically as more neurons go, so the search first *brackets* (walks
up the grid `bisect_grid` to the first fraction at or below the target), then bisects inside
that bracket. Every candidate is applied to the unpruned model (hooks are removed between
candidates), and accuracy is measured on the *evaluation* split, disjoint from the text or
images the scores were collected on, document by document (the authors' evaluation overlapped
their collection data).

Every accuracy carries its standard error over independent items (text blocks, images,
questions); pruned and unpruned accuracies are measured on the same items, so their
difference has a *paired* standard error, much smaller than either alone.

Then each forget subset's pruned model is evaluated on every subset: pruned / unpruned
accuracy. Subsets that no fraction brings into the window are marked (!) and reported, never
given a placeholder value.

A score-only profile (`configs/authors/`) has no model to prune: it draws the authors' own
published tables in the same style instead, their headline numbers computed by the same
summary code (`modsep_utils.authors`)."""),
    code("""from modsep_utils import authors

if authors.is_score_only(cfg):
    print(authors.show_cross_eval(cfg))
    authors.skip_rest_if_score_only(cfg, "the search and the cross-evaluation need the model")"""),
    code("""from modsep_utils import activations, pruning, scoring

trained, retain_trained = activations.all_stats(cfg, forget_names, random_init=False)
scores = scoring.all_scores(trained, retain_trained, eps)
evaluator = pruning.Evaluator(cfg, *activations.get_model(model, False, seed, dtype))
eval_names = config.eval_names(cfg)
base = {name: evaluator(name) for name in eval_names}
for name, m in base.items():
    print(f"unpruned {name:24s} {m['accuracy']:.3f} ± {m['se']:.3f} ({m['n']} predictions)")"""),
    md("""### Multiple choice: which format?
The authors scored MMLU zero-shot by whether the top-1 next token is the gold letter. A small
model can sit near chance on that format while knowing the answers, so both scorings are
measured on the unpruned model; the profile's `mc_method` is used for the cross-evaluation."""),
    code("""mc_names = [n for n in eval_names if pruning.subset_kind(n) == "mc"]
if mc_names:
    mc = pruning.compare_mc_methods(evaluator, mc_names)
    update_json(config.headline_path(cfg), {"03_multiple_choice_formats": mc})
    print(f"chance {mc['chance']:.2f}; letter format {mc['letter']['pooled']:.3f} ± "
          f"{mc['letter']['pooled_se']:.3f}; log-likelihood {mc['loglik']['pooled']:.3f} ± "
          f"{mc['loglik']['pooled_se']:.3f} (all questions pooled); used: {mc['used']}")
else:
    print("no multiple-choice subsets in this experiment")"""),
    code("""from modsep_utils.io import write_json

results, matrices, searches = {}, {}, {}  # by drop label, e.g. "50%"
for drop in drops:
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
              f"{f['paired']['diff_se']:.3f} paired){flag}")"""),
    md("""### Accuracy against the fraction pruned (not in the paper)
Every point the search measured, per subset: how accuracy falls as more top-scored neurons
are removed, the target window of each drop (band) and the fraction chosen (circled; red when
the target was not reached)."""),
    code("""fig, numbers = pruning.plot_search_curves(searches)
save_figure(fig, config.figure_path(cfg, "03_search_curves"), numbers)
plt.show()"""),
    md("""### Figure: pruned / unpruned accuracy
Columns: the subset whose neurons were pruned; rows: the subset evaluated. The diagonal is the
targeted drop; off-diagonal cells show how much the other subsets suffer. Small grey numbers:
the paired standard error of each cell (percentage points). The headline means in each
panel's title are over the columns that reached the target, with bootstrap 95% intervals over
subsets."""),
    code("""fig = pruning.plot_cross_eval(matrices, results, title=f"{model}:")
fig_name = "fig1_cross_eval" if experiment == "vit" else "fig2_cross_eval"
save_figure(fig, config.figure_path(cfg, fig_name), {"matrices": matrices, "summaries": results})
plt.show()"""),
    md("""### Headline numbers, next to the paper's"""),
    code("""import json

headline = pruning.headline(experiment, results)
update_json(config.headline_path(cfg), {"03_selective_pruning": headline})
print(pruning.format_headline(headline))"""),
    code("""# NBVAL_CHECK_OUTPUT
# the headline agrees with the matrix it summarises (recomputed by a separate loop), and the
# saved fractions read back with this run's parameters
for drop in drops:
    label = pruning.drop_label(drop)
    print(label, "headline agrees with its matrix:",
          pruning.headline_agrees(results[label], matrices[label], searches[label]))
    print(label, "saved fractions match this run:",
          pruning.load_fractions(cfg, drop) == json.loads(json.dumps(searches[label])))
# the key numbers equal the committed ones within 0.02 (results/expected/<profile>_<experiment>.json;
# CI runs the smoke ViT profile, whose numbers are committed)
from modsep_utils import reproduction
same = reproduction.matches_expected(profile, experiment, "03_selective_pruning", headline)
print("key numbers match the committed ones:",
      "no committed numbers for this profile" if same is None else same)"""),
]


if __name__ == "__main__":
    build("01_activations.ipynb", "# 01 · Activations\nStreaming neuron statistics for the "
          "trained and the random model.", NB01)
    build("02_scoring.ipynb", "# 02 · Scoring\nForget/retain importance of every neuron.", NB02)
    build("03_pruning.ipynb", "# 03 · Selective pruning\nFigures 1 (ViT) and 2 (LM).", NB03)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from notebooks_section4 import NOTEBOOKS
    for name, title, cells in NOTEBOOKS:
        build(name, title, cells)
