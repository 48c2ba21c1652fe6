"""A cached value is reused only for exactly the same inputs: every input of a statistics or
accuracy measurement (model weights, data content, code version, each parameter) is in its
key, and a changed input gives a new key while the same inputs give the same key."""
import pytest

from modsep_utils import activations, data, io, pruning
from modsep_utils.config import load_profile

CFG = load_profile("smoke", "lm")


@pytest.fixture
def fake_inputs(monkeypatch):
    """Fingerprints that the test can change: weights by model name, data by subset name."""
    state = {"weights": "w1", "random": "r1", "data": "d1"}
    monkeypatch.setattr(activations, "_source_fingerprint", lambda name: state["weights"])
    monkeypatch.setattr(activations, "_random_fingerprint",
                        lambda name, seed, dtype, source: f"{state['random']}-{seed}-{source}")
    monkeypatch.setattr(data, "subset_fingerprint", lambda name: f"{state['data']}-{name}")
    return state


def _keys(cfg, random_init=False, model_seed=None):
    return (io.content_key(activations.stats_inputs(cfg, "text:python", random_init, model_seed,
                                                    half=0)),
            io.content_key(pruning.eval_inputs(cfg, "text:python")))


def test_same_inputs_same_key(fake_inputs):
    assert _keys(CFG) == _keys(dict(CFG))


@pytest.mark.parametrize("what", ["weights", "data"])
def test_changed_content_changes_every_key(fake_inputs, what):
    before = _keys(CFG)
    fake_inputs[what] = "changed"
    after = _keys(CFG)
    assert before[0] != after[0] and before[1] != after[1]


def test_random_model_is_keyed_by_its_own_weights(fake_inputs):
    r0, r1 = _keys(CFG, True, 0)[0], _keys(CFG, True, 1)[0]
    assert r0 != r1  # another seed: other weights
    fake_inputs["random"] = "other-init"  # e.g. another transformers version initialises
    assert _keys(CFG, True, 0)[0] != r0   # differently: not reused
    assert _keys(CFG, False)[0] != r0


@pytest.mark.parametrize("key,value", [("collect_n", 2048), ("block_len", 64),
                                       ("dtype", "bfloat16"), ("seed", 1)])
def test_each_statistics_parameter_is_in_the_key(fake_inputs, key, value):
    assert _keys({**CFG, key: value})[0] != _keys(CFG)[0]


@pytest.mark.parametrize("key,value", [("eval_n", 1024), ("block_len", 64), ("seed", 1),
                                       ("dtype", "bfloat16"), ("batch_size", 4)])
def test_each_evaluation_parameter_is_in_the_key(fake_inputs, key, value):
    assert _keys({**CFG, key: value})[1] != _keys(CFG)[1]


def test_code_versions_are_in_the_keys(fake_inputs, monkeypatch):
    before = _keys(CFG)
    monkeypatch.setattr(activations, "STATS_VERSION", activations.STATS_VERSION + 1)
    monkeypatch.setattr(pruning, "EVAL_VERSION", pruning.EVAL_VERSION + 1)
    after = _keys(CFG)
    assert before[0] != after[0] and before[1] != after[1]


def test_cache_reuses_only_identical_inputs(fake_inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "DATA", tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"accuracy": 0.5}

    key = [pruning.eval_inputs(CFG, "text:python"), "unpruned"]
    assert io.cached_json("accuracy", key, compute) == {"accuracy": 0.5}
    io.cached_json("accuracy", [pruning.eval_inputs(CFG, "text:python"), "unpruned"], compute)
    assert len(calls) == 1  # same inputs: reused
    fake_inputs["weights"] = "retrained"
    io.cached_json("accuracy", [pruning.eval_inputs(CFG, "text:python"), "unpruned"], compute)
    assert len(calls) == 2  # a retrained model: computed again
