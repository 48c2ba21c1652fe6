"""Evaluation batched by length and multiple choice on a shared prompt prefix give the same
answers as the former path (every question + choice in full, in source order)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modsep_utils import pruning
from modsep_utils.data import MCQuestion, mc_prompt
from test_scoring_pruning import CharTokenizer, MCSubset
from tiny import tiny_text_models


def _old_mc_hits(model, tok, qs, method, batch_size):
    """The former scorer (modsep_utils.pruning before prefix reuse), kept as the reference:
    batches in source order, right-padded, every choice run with its whole question."""
    pad, hits = tok.pad_token_id, []
    with torch.inference_mode():
        if method == "letter":
            for start in range(0, len(qs), batch_size):
                chunk = qs[start:start + batch_size]
                ids, mask = pruning._pad_right([tok(mc_prompt(q))["input_ids"] for q in chunk],
                                               pad)
                logits = model(input_ids=ids, attention_mask=mask).logits
                top = logits[torch.arange(len(chunk)), mask.sum(1) - 1].argmax(-1)
                hits += [int(tok.decode([t]).strip() == "ABCD"[q.answer])
                         for q, t in zip(chunk, top.tolist())]
            return hits, None
        per, all_scores = max(1, batch_size // 4), []
        for start in range(0, len(qs), per):
            chunk = qs[start:start + per]
            seqs, spans = [], []
            for q in chunk:
                prompt = tok(f"Question: {q.question}\nAnswer:")["input_ids"]
                for c in q.choices:
                    cont = tok(" " + c, add_special_tokens=False)["input_ids"]
                    seqs.append(prompt + cont)
                    spans.append((len(prompt), len(prompt) + len(cont)))
            ids, mask = pruning._pad_right(seqs, pad)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            scores = torch.tensor([float(logp[i, a - 1:b - 1].gather(1, ids[i, a:b, None]).mean())
                                   for i, (a, b) in enumerate(spans)]).view(len(chunk), 4)
            all_scores.append(scores)
            hits += (scores.argmax(1) == torch.tensor([q.answer for q in chunk])).long().tolist()
        return hits, torch.cat(all_scores)


def _varied_questions(n=23, seed=0):
    rng = np.random.default_rng(seed)
    words = ["ab", "cde", "f", "ghij", "kl", "mnopq", "r"]

    def text(lo, hi):
        return " ".join(rng.choice(words, rng.integers(lo, hi)))
    return [MCQuestion("s", text(1, 7) + "?", [text(1, 4) for _ in range(4)], i % 4)
            for i in range(n)]


@pytest.mark.parametrize("arch,method", [(a, m) for a in ("llama", "mistral", "gpt2")
                                         for m in ("loglik", "letter")
                                         if (a, m) != ("gpt2", "letter")])  # 64 positions
def test_mc_by_length_and_prefix_equals_former_path(arch, method):
    model, tok = tiny_text_models()[arch], CharTokenizer()
    qs = _varied_questions()
    mask = torch.zeros(2, 24, dtype=torch.bool)
    mask[0, ::3] = True
    for m in (None, mask):
        with pruning.pruned(model, m) if m is not None else torch.no_grad():
            want, _ = _old_mc_hits(model, tok, qs, method, batch_size=8)
            got, total = pruning.mc_counts(model, tok, MCSubset(qs), method, batch_size=8)
        assert got.tolist() == want and total.tolist() == [1] * len(qs)


def test_loglik_scores_equal_former_scores():
    """Not only the argmax: each choice's mean log-probability agrees to float rounding."""
    model, tok = tiny_text_models()["mistral"], CharTokenizer()
    qs = _varied_questions(9, seed=1)
    _, want = _old_mc_hits(model, tok, qs, "loglik", batch_size=4 * len(qs))
    with torch.inference_mode():
        got = pruning._loglik_scores(model, tok, qs, list(range(len(qs))), torch.device("cpu"),
                                     tok.pad_token_id)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
