import pytest
import torch
from torch import nn

from modsep_utils.neurons import NeuronStats, collect_stats, neuron_sites, pruned
from tiny import LegacyViT, text_batch, tiny_text_models, tiny_vit


def _by_hand(name, block, x):
    """The neuron vector of one block computed from the MLP input ``x``."""
    if name in ("llama", "mistral"):
        m = block.mlp
        return m.act_fn(m.gate_proj(x)) * m.up_proj(x)
    if name == "gpt2":
        return block.mlp.act(block.mlp.c_fc(x))
    if name == "bert":
        return block.intermediate.intermediate_act_fn(block.intermediate.dense(x))
    if name == "vit":
        return block.mlp.activation_fn(block.mlp.fc1(x))
    raise KeyError(name)


def _blocks(name, model):
    return {"llama": lambda: model.model.layers, "mistral": lambda: model.model.layers,
            "gpt2": lambda: model.transformer.h, "bert": lambda: model.bert.encoder.layer,
            "vit": lambda: model.vit.layers}[name]()


def _mlp_input_module(name, block):
    return block.intermediate if name == "bert" else block.mlp


def _all_models():
    models = tiny_text_models()
    models["vit"] = tiny_vit()
    return models


def _batch(name):
    if name == "vit":
        return {"pixel_values": torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))}
    return text_batch()


@pytest.mark.parametrize("name", ["llama", "mistral", "gpt2", "bert", "vit"])
def test_hooked_value_equals_hand_computed(name):
    model = _all_models()[name]
    blocks = _blocks(name, model)
    inputs = {}
    hs = [_mlp_input_module(name, b).register_forward_pre_hook(
        lambda m, a, i=i: inputs.__setitem__(i, a[0].detach())) for i, b in enumerate(blocks)]
    try:
        stats = collect_stats(model, [_batch(name)])
    finally:
        for h in hs:
            h.remove()
    sites = neuron_sites(model)
    assert len(sites) == len(blocks)
    for i, block in enumerate(blocks):
        with torch.no_grad():
            acts = _by_hand(name, block, inputs[i]).double().reshape(-1, sites[i].n_neurons)
        torch.testing.assert_close(stats.sum[i], acts.sum(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats.sum_abs[i], acts.abs().sum(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats.sum_sq[i], acts.square().sum(0), rtol=1e-5, atol=1e-6)
        assert torch.equal(stats.n_pos[i], (acts > 0).sum(0).double())
        assert stats.count[i] == acts.shape[0]
        # W_in is [neurons, d_model]
        assert sites[i].w_in.shape == (sites[i].n_neurons, inputs[i].shape[-1])


def test_gated_w_in_is_up_proj():
    model = tiny_text_models()["mistral"]
    site = neuron_sites(model)[0]
    assert site.w_in.data_ptr() == model.model.layers[0].mlp.up_proj.weight.data_ptr()
    assert site.out_proj is model.model.layers[0].mlp.down_proj


def test_legacy_vit_layout():
    model = LegacyViT(layers=3, d=8, n=12)
    sites = neuron_sites(model)
    assert [s.out_proj for s in sites] == [b.output.dense for b in model.vit.encoder.layer]
    assert sites[0].w_in.shape == (12, 8)
    x = torch.randn(2, 5, 8)
    stats = collect_stats(model, [{"pixel_values": x}])
    with torch.no_grad():
        h = nn.functional.gelu(model.vit.encoder.layer[0].intermediate.dense(x))
    torch.testing.assert_close(stats.sum[0], h.double().reshape(-1, 12).sum(0))


def test_unsupported_architecture_names_supported_ones():
    with pytest.raises(ValueError, match="Supported: .*ViT.*GPT-2.*Llama"):
        neuron_sites(nn.Sequential(nn.Linear(3, 3)))


@pytest.mark.parametrize("name", ["llama", "gpt2", "bert", "vit"])
def test_pruning_equals_zeroing_output_columns(name):
    model = _all_models()[name]
    batch = _batch(name)
    sites = neuron_sites(model)
    mask = torch.zeros(len(sites), sites[0].n_neurons, dtype=torch.bool)
    mask[0, [1, 5, 7]] = True
    mask[-1, [0, 2]] = True
    with torch.no_grad():
        base = model(**batch).logits
        with pruned(model, mask):
            hooked = model(**batch).logits
        after = model(**batch).logits
        for s in sites:
            w = s.out_proj.weight
            # Linear weight is [out, in]; GPT-2 Conv1D is [in, out]
            if name == "gpt2":
                w[mask[s.layer]] = 0
            else:
                w[:, mask[s.layer]] = 0
        zeroed = model(**batch).logits
    torch.testing.assert_close(hooked, zeroed)
    torch.testing.assert_close(after, base)  # hooks gone after the block
    assert not torch.allclose(hooked, base)


def test_pruned_removes_hooks_on_exception():
    model = tiny_text_models()["llama"]
    sites = neuron_sites(model)
    mask = torch.ones(len(sites), sites[0].n_neurons, dtype=torch.bool)
    with pytest.raises(RuntimeError):
        with pruned(model, mask):
            raise RuntimeError("boom")
    assert all(not s.out_proj._forward_pre_hooks for s in sites)


def test_pruned_rejects_wrong_mask_shape():
    model = tiny_text_models()["llama"]
    with pytest.raises(ValueError, match="layers, neurons"):
        with pruned(model, torch.zeros(5, 5, dtype=torch.bool)):
            pass


def test_merged_statistics_equal_one_pass():
    model = tiny_text_models()["llama"]
    a, b = text_batch(seed=1), text_batch(seed=2, pad_last=4)
    whole = collect_stats(model, [a, b])
    merged = collect_stats(model, [a]).merge(collect_stats(model, [b]))
    for f in NeuronStats.FIELDS:
        torch.testing.assert_close(getattr(merged, f), getattr(whole, f))
    assert whole.count[0] == 3 * 10 * 2 - 4


def test_padding_is_excluded():
    model = tiny_text_models()["llama"]
    padded = text_batch(n=2, length=10, seed=3, pad_last=4)
    s_pad = collect_stats(model, [padded])
    # the same two sequences, unpadded, one at a time
    first = {k: v[:1] for k, v in padded.items()}
    second = {k: v[1:, :6] for k, v in padded.items()}
    s_sep = collect_stats(model, [first, second])
    torch.testing.assert_close(s_pad.sum_abs, s_sep.sum_abs, rtol=1e-5, atol=1e-6)
    assert s_pad.count[0] == 16


def test_stats_roundtrip_and_means():
    model = tiny_text_models()["gpt2"]
    s = collect_stats(model, [text_batch()])
    s2 = NeuronStats.from_dict(s.to_dict())
    torch.testing.assert_close(s2.mean_abs(), s.sum_abs / s.count[:, None])
    assert s.mean_abs().dtype == torch.float64
    assert (s.var() >= -1e-9).all()
    with pytest.raises(ValueError, match="shapes"):
        s.merge(NeuronStats.zeros(1, 3))


def test_pruning_mask_must_be_boolean_or_0_1():
    import numpy as np
    from modsep_utils.neurons import as_mask
    assert as_mask(np.array([[True, False]])).dtype == torch.bool  # numpy accepted
    assert as_mask(torch.tensor([[0.0, 1.0]])).tolist() == [[False, True]]
    assert as_mask(torch.tensor([[0, 1]])).tolist() == [[False, True]]
    with pytest.raises(ValueError, match="not the scores"):
        as_mask(torch.tensor([[0.3, 2.0]]))  # a score tensor passed by mistake


def test_collection_stops_after_the_last_site_and_matches_a_full_forward():
    from tiny import tiny_text_models
    model = tiny_text_models()["llama"]
    calls = []
    h = model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    ids = torch.randint(1, 50, (2, 6))
    stats = collect_stats(model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids)}])
    h.remove()
    assert calls == []  # the LM head never ran
    acts = []
    hooks = [s.out_proj.register_forward_pre_hook(lambda m, a: acts.append(a[0].detach()))
             for s in neuron_sites(model)]
    with torch.no_grad():
        model(input_ids=ids)
    for hk in hooks:
        hk.remove()
    want = torch.stack([a.abs().reshape(-1, a.shape[-1]).double().sum(0) for a in acts])
    torch.testing.assert_close(stats.sum_abs, want, rtol=1e-5, atol=1e-6)
