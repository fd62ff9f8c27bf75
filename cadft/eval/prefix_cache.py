"""Scoring with the prompt prefix every record shares computed once: the keys and values of the shared first tokens
(the chat template, the verbalizer's question with head.question_first, the first words of the record) are
computed in one forward pass, and each batch runs only its records' own tokens over them.

The scores equal plain scoring's (tested within 1e-5 in probability): a causal model's hidden state at a token depends
only on the tokens before it, the suffix tokens get the positions they have in the whole sequence, and the
sequence-classification head reads the last non-pad token of the ids it is given (transformers'
GenericForSequenceClassification pools in the coordinates of the input ids), which for right-padded suffixes is the
same token plain scoring reads. Measured on SmolLM2-135M in fp32 on 2 CPU cores: bench/prefix_scoring.py.

transformers 5.25 (the cache goes in as `cache=`; `past_key_values=` is deprecated): a DynamicCache grows in place as it
is used (`update` concatenates), so passing one cache to a second batch gives silently wrong logits; the prefix tensors
themselves are never written to. So the prefix's (keys, values) are kept per layer at batch 1, and every batch gets a
fresh cache holding views of them expanded to its size (`config=` picks the layer kinds, e.g. Gemma 3's sliding-window
layers).
"""

from __future__ import annotations

import torch

MIN_PREFIX = 2  # tokens: below this there is nothing worth reusing


def shared_prefix(sequences: list[list[int]], pad_id: int | None) -> int:
    """The number of leading tokens every sequence shares, leaving each at least one token of its own that is not the
    pad token (the head reads the last non-pad token of the suffix, as plain scoring reads it of the whole sequence)."""
    if len(sequences) < 2:
        return 0
    first, length = sequences[0], min(len(ids) for ids in sequences)
    shared = 0
    while shared < length and all(ids[shared] == first[shared] for ids in sequences):
        shared += 1
    while shared > 0 and any(all(token == pad_id for token in ids[shared:]) for ids in sequences):
        shared -= 1
    return shared


def _decoder(model):
    """The decoder stack (LlamaModel, Gemma3TextModel, ...) of a sequence classifier, inside a peft wrapper or not."""
    if hasattr(model, "get_base_model"):  # peft: the LoRA layers, merged or not, live inside the base model
        model = model.get_base_model()
    return getattr(model, model.base_model_prefix)


@torch.inference_mode()
def prefix_states(model, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the (keys, values) of the prefix at batch 1: [1, kv_heads, len(prefix), head_dim]."""
    from transformers import DynamicCache

    ids = torch.tensor([prefix], dtype=torch.long, device=model.device)
    cache = DynamicCache(config=model.config)
    _decoder(model)(input_ids=ids, attention_mask=torch.ones_like(ids), cache=cache, use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]


@torch.inference_mode()
def score_suffixes(model, states, prefix_length: int, suffixes: list[list[int]], pad_id: int) -> torch.Tensor:
    """The classifier's logits [batch, 2] of prefix + each suffix, the suffixes right-padded to one length."""
    from transformers import DynamicCache

    batch, longest = len(suffixes), max(len(ids) for ids in suffixes)
    ids = torch.full((batch, longest), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, prefix_length + longest), dtype=torch.long)
    mask[:, :prefix_length] = 1
    for row, suffix in enumerate(suffixes):
        ids[row, : len(suffix)] = torch.tensor(suffix)
        mask[row, prefix_length : prefix_length + len(suffix)] = 1
    positions = torch.arange(prefix_length, prefix_length + longest).unsqueeze(0).expand(batch, -1)
    cache = DynamicCache(
        [(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)) for keys, values in states],
        config=model.config,
    )
    device = model.device
    return model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        cache=cache,
        use_cache=True,
    ).logits
