"""The head (`head=classifier|verbalizer`): how a record becomes the model's input, and where the score head starts.

classifier  the record text as it is; the 2-output `score` layer on the last token starts random, so training starts
            from nothing the model knows.
verbalizer  the record inside a prompt in the backbone's chat template that asks `head.question`; the `score` layer
            starts as the language-model head's rows of the two answer words (no, yes). The next-token logits at the
            end of the prompt are the last hidden state times those rows, so the softmax over the two outputs is
            exactly P(yes) / (P(yes) + P(no)): the untrained model already answers (the zero-shot baseline), and
            fine-tuning trains the answer token (the Yes/No part of the language-model loss).

Either way the model is a 2-label sequence classifier, so strategies, ZeRO, imbalance, checkpoints, resume, eval,
recalibration and cadft-predict treat both heads alike. A prompt is encoded as (ids before the record, the record's
ids, ids after it): truncation (train.max_length) removes the record's last tokens, never the question or the
generation prompt, whose last token is where the answer is read. `head.question_first` puts the question before the
record: the ids before the record, the same for every record, then hold the question too, and scoring computes that
shared prefix once per batch (cadft.eval.prefix_cache).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from cadft.config.schema import Head, HeadVerbalizer
from cadft.errors import CadftError

_RECORD = "\x00cadft-record\x00"  # stands for the record while the template is rendered; split out afterwards


@dataclass(frozen=True)
class Encoded:
    input_ids: list[list[int]]
    truncated: int  # records cut to fit max_length
    longest: int  # the longest input before truncation, in tokens


def encode(texts: list[str], tokenizer, head: Head, max_length: int) -> Encoded:
    """Token ids of each record's model input, at most max_length long."""
    if head.name == "classifier":
        full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return Encoded(
            [ids[:max_length] for ids in full],
            sum(len(ids) > max_length for ids in full),
            max((len(i) for i in full), default=0),
        )
    before, after = prompt_ids(tokenizer, head)
    room = max_length - len(before) - len(after)
    if room < 1:
        raise CadftError(
            f"train.max_length={max_length} leaves no room for the record: the head=verbalizer prompt alone takes "
            f"{len(before) + len(after)} tokens; raise train.max_length or shorten head.question / head.system"
        )
    records = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"] if texts else []
    return Encoded(
        [before + ids[:room] + after for ids in records],
        sum(len(ids) > room for ids in records),
        max((len(ids) for ids in records), default=0) + len(before) + len(after),
    )


def prompt_ids(tokenizer, head: HeadVerbalizer) -> tuple[list[int], list[int]]:
    """(ids before the record, ids after it) of the verbalizer prompt. With a chat template: a user turn holding the
    record and the question (the question first with head.question_first), then the generation prompt; without one
    (tiny test tokenizers; Gemma-3-270M, a base model): 'record\\nquestion\\nAnswer:' (or question, then record)."""
    parts = [head.question, _RECORD] if head.question_first else [_RECORD, head.question]
    if tokenizer.chat_template:
        messages = [{"role": "system", "content": head.system}] if head.system is not None else []
        rendered = tokenizer.apply_chat_template(
            messages + [{"role": "user", "content": "\n\n".join(parts)}], tokenize=False, add_generation_prompt=True
        )
    else:
        rendered = (tokenizer.bos_token or "") + "\n".join(parts) + "\nAnswer:"
    before, found, after = rendered.partition(_RECORD)
    if not found:
        raise CadftError(
            "the backbone's chat template dropped the user message: head=verbalizer cannot place the record in it"
        )
    return (
        tokenizer(before, add_special_tokens=False)["input_ids"] if before else [],
        tokenizer(after, add_special_tokens=False)["input_ids"],
    )


def answer_token_ids(tokenizer, head: HeadVerbalizer) -> tuple[int, int]:
    """(no, yes): the first token of each answer word as the model would write it after the prompt."""
    lead = "" if tokenizer.chat_template else " "  # after 'Answer:' the word comes with its space
    ids = []
    for key in ("answer_no", "answer_yes"):
        tokens = tokenizer(lead + getattr(head, key), add_special_tokens=False)["input_ids"]
        if not tokens:
            raise CadftError(f"head.{key}={getattr(head, key)!r} encodes to no token")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise CadftError(
            f"head.answer_no={head.answer_no!r} and head.answer_yes={head.answer_yes!r} start with the same "
            f"token ({ids[0]}): the model could not tell them apart; choose words that differ in their first token"
        )
    return ids[0], ids[1]


def init_head(model: torch.nn.Module, tokenizer, head: Head, backbone_path: str, head_name: str) -> None:
    """For head=verbalizer, set the score layer (`head_name`) to the language-model head's rows of the answer words,
    read from the backbone's weight files (a sequence classifier does not load the language-model head)."""
    if head.name == "classifier":
        return
    rows = output_embedding_rows(model, backbone_path, answer_token_ids(tokenizer, head))
    weight = getattr(model, head_name).weight
    with _gathered(weight):  # under ZeRO-3 the weight is partitioned; rank 0's copy is scattered back
        if weight.shape != rows.shape:
            raise CadftError(
                f"the score layer has shape {tuple(weight.shape)}, the answer rows {tuple(rows.shape)}: "
                "head=verbalizer needs a backbone whose hidden state feeds its language-model head directly"
            )
        weight.data.copy_(rows.to(weight.dtype))


def output_embedding_rows(model: torch.nn.Module, backbone_path: str, token_ids: tuple[int, ...]) -> torch.Tensor:
    """Rows of the language-model head (or of the input embeddings when the two are tied) from the safetensors files."""
    from safetensors import safe_open

    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    embeddings = (
        next(name for name, module in model.named_modules() if module is model.get_input_embeddings()) + ".weight"
    )
    keys = [embeddings] if tied else ["lm_head.weight"]  # untied: the input embeddings would be the wrong rows
    files = _weight_files(backbone_path)
    for key in keys:
        if key in files:
            with safe_open(files[key], framework="pt") as handle:
                table = handle.get_slice(key)
                return torch.cat([table[i : i + 1] for i in token_ids]).float()
    raise CadftError(
        f"backbone {backbone_path}: none of {', '.join(keys)} is in its safetensors files, so head=verbalizer "
        "cannot find the language-model head's rows; use head=classifier"
    )


def _weight_files(backbone_path: str) -> dict[str, str]:
    """Tensor name -> safetensors file of a local folder or a cached hub id."""
    from transformers.utils import cached_file

    index = cached_file(backbone_path, "model.safetensors.index.json", _raise_exceptions_for_missing_entries=False)
    if index:
        weight_map = json.loads(Path(index).read_text())["weight_map"]
        return {key: str(Path(index).parent / file) for key, file in weight_map.items()}
    single = cached_file(backbone_path, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    if not single:
        raise CadftError(
            f"backbone {backbone_path}: no model.safetensors (or index) to read the language-model head from; "
            "head=verbalizer needs safetensors weights"
        )
    from safetensors import safe_open

    with safe_open(single, framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


def _gathered(weight: torch.nn.Parameter):
    if hasattr(weight, "ds_id"):  # a DeepSpeed ZeRO-3 parameter
        import deepspeed

        return deepspeed.zero.GatheredParameters([weight], modifier_rank=0)
    import contextlib

    return contextlib.nullcontext()
