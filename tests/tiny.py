"""Tiny random models built from configs (no downloads), shared by the tests."""
from __future__ import annotations

import torch
from torch import nn

VOCAB = 64


def tiny_text_models() -> dict[str, nn.Module]:
    from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel,
                              LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM)
    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=24)
    models = {
        "llama": LlamaForCausalLM(LlamaConfig(**common, num_key_value_heads=2,
                                              max_position_embeddings=64)),
        "mistral": MistralForCausalLM(MistralConfig(**common, num_key_value_heads=1,
                                                    max_position_embeddings=64)),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=2, n_head=2,
                                           n_inner=24, n_positions=64, bos_token_id=0,
                                           eos_token_id=0)),
        "bert": BertForMaskedLM(BertConfig(**common, max_position_embeddings=64)),
    }
    return {k: m.eval() for k, m in models.items()}


def tiny_vit(num_labels: int = 4, layers: int = 2) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                    intermediate_size=24, image_size=8, patch_size=4, num_channels=1,
                    num_labels=num_labels)
    return ViTForImageClassification(cfg).eval()


class _Dense(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.dense = nn.Linear(i, o)


class _LegacyViTLayer(nn.Module):
    """The pre-5.9 ViT block layout: ``intermediate.dense`` (+GELU) then ``output.dense``."""

    def __init__(self, d=8, n=12):
        super().__init__()
        self.intermediate, self.output = _Dense(d, n), _Dense(n, d)

    def forward(self, x):
        return x + self.output.dense(nn.functional.gelu(self.intermediate.dense(x)))


class LegacyViT(nn.Module):
    """A stand-in with the older ``vit.encoder.layer[i]`` module paths."""

    def __init__(self, layers=3, d=8, n=12):
        super().__init__()
        self.vit = nn.Module()
        self.vit.encoder = nn.Module()
        self.vit.encoder.layer = nn.ModuleList(_LegacyViTLayer(d, n) for _ in range(layers))

    def forward(self, pixel_values):
        x = pixel_values
        for layer in self.vit.encoder.layer:
            x = layer(x)
        return x


def text_batch(n=3, length=10, seed=0, pad_last: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, length), generator=g)
    mask = torch.ones_like(ids)
    if pad_last:
        mask[-1, -pad_last:] = 0
        ids[-1, -pad_last:] = 0
    return {"input_ids": ids, "attention_mask": mask}


class TextSubset:
    """Minimal stand-in with the interface of ``modsep_utils.data.Subset`` for text."""

    kind = "text"

    def __init__(self, name, tokens):
        self.name, self.tokens = name, tokens

    def batches(self, batch_size):
        for i in range(0, len(self.tokens), batch_size):
            ids = self.tokens[i:i + batch_size]
            yield {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class ImageSubset:
    kind = "image"

    def __init__(self, name, pixel_values, labels):
        self.name, self.pixel_values, self.labels = name, pixel_values, labels

    def batches(self, batch_size):
        for i in range(0, len(self.labels), batch_size):
            yield {"pixel_values": self.pixel_values[i:i + batch_size]}
