"""head=classifier|verbalizer: the verbalizer's score is the language model's own Yes/No odds, its prompt survives
truncation, and a verbalizer run trains, saves, reloads and compares with the zero-shot baseline."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from cadft.config.schema import CLASSIFIER, HeadVerbalizer
from cadft.errors import CadftError
from cadft.eval.score import score_texts
from cadft.train.backbone import load_tokenizer, resolve_backbone
from cadft.train.head import answer_token_ids, encode, prompt_ids
from cadft.train.model import load_model, zero_shot_model
from cadft.train.run import run_training

VERBALIZER = HeadVerbalizer(
    name="verbalizer",
    question="Will this person develop coronary artery disease?",
    system=None,
    answer_yes="Yes",
    answer_no="No",
)
RECORDS = [
    "The age at recruitment is 63 years. The sex is Female.",
    "The age at recruitment is 41 years.",
    "The sex is Male. The smoking status is Current. The systolic blood pressure is 150 mmHg.",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(make_config_module):
    cfg = make_config_module()
    return resolve_backbone(cfg.backbone, cfg.paths.cache_dir), load_tokenizer(cfg.backbone, cfg.paths.cache_dir)


@pytest.fixture(scope="module")
def make_config_module(cache_dir, tmp_path_factory):
    from cadft.config.compose import compose
    from cadft.config.validate import validate, with_absolute_paths

    def make(*overrides):
        """The typed config of overrides (as make_config, for module-scoped fixtures)."""
        base = [f"paths.output_dir={tmp_path_factory.mktemp('out')}", f"paths.cache_dir={cache_dir}", "backbone=tiny"]
        return with_absolute_paths(validate(compose("config", base + list(overrides))))

    return make


def language_model_odds(folder, tokenizer, head, texts) -> list[float]:
    """P(yes) / (P(yes) + P(no)) of the next token after each prompt, from the causal language model, one at a time."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    no, yes = answer_token_ids(tokenizer, head)
    odds = []
    for ids in encode(texts, tokenizer, head, 512).input_ids:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        odds.append(torch.softmax(logits[[no, yes]], dim=-1)[1].item())
    return odds


def test_the_verbalizer_score_is_the_language_models_yes_no_odds(tiny):
    folder, tokenizer = tiny
    model = zero_shot_model(folder, tokenizer, VERBALIZER)
    batched = score_texts(
        model, tokenizer, RECORDS, head=VERBALIZER, batch_size=3, max_length=512, device="cpu"
    )  # right-padded
    assert batched.tolist() == pytest.approx(language_model_odds(folder, tokenizer, VERBALIZER, RECORDS), abs=1e-5)
    assert len(set(batched.round(6))) == len(RECORDS)  # the records are read, not a constant


def test_tied_embeddings_give_the_answer_rows_too(tiny, tmp_path):
    """SmolLM2 ties its language-model head to the input embeddings and stores no lm_head weight."""
    folder, tokenizer = tiny
    untied = LlamaForCausalLM.from_pretrained(folder)
    config = untied.config
    config.tie_word_embeddings = True
    tied = LlamaForCausalLM(config)
    tied.load_state_dict({k: v for k, v in untied.state_dict().items() if k != "lm_head.weight"}, strict=False)
    tied.tie_weights()
    tied.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = zero_shot_model(str(tmp_path), tokenizer, VERBALIZER)
    no, yes = answer_token_ids(tokenizer, VERBALIZER)
    assert torch.equal(model.score.weight, untied.model.embed_tokens.weight[[no, yes]])
    scores = score_texts(model, tokenizer, RECORDS, head=VERBALIZER, batch_size=2, max_length=512, device="cpu")
    assert scores.tolist() == pytest.approx(language_model_odds(tmp_path, tokenizer, VERBALIZER, RECORDS), abs=1e-5)


def test_a_chat_template_holds_the_record_and_question(tiny):
    _, tokenizer = tiny
    chat = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    chat.chat_template = CHAT_TEMPLATE
    before, after = prompt_ids(chat, replace(VERBALIZER, system="You are a cardiologist."))
    assert chat.decode(before) == "<s>system\nYou are a cardiologist.</s>\n<s>user\n"
    assert chat.decode(after) == f"\n\n{VERBALIZER.question}</s>\n<s>assistant\n"
    ids = encode(RECORDS[:1], chat, replace(VERBALIZER, system=None), 512).input_ids[0]
    assert chat.decode(ids) == f"<s>user\n{RECORDS[0]}\n\n{VERBALIZER.question}</s>\n<s>assistant\n"
    assert answer_token_ids(chat, VERBALIZER) == (
        chat("No", add_special_tokens=False)["input_ids"][0],
        chat("Yes", add_special_tokens=False)["input_ids"][0],
    )


def test_truncation_cuts_the_record_never_the_question(tiny):
    _, tokenizer = tiny
    before, after = prompt_ids(tokenizer, VERBALIZER)
    limit = len(before) + len(after) + 5
    encoded = encode(RECORDS, tokenizer, VERBALIZER, limit)
    assert encoded.truncated == 3 and all(len(ids) == limit for ids in encoded.input_ids)
    assert all(ids[-len(after) :] == after and ids[: len(before)] == before for ids in encoded.input_ids)
    record = tokenizer(RECORDS[0], add_special_tokens=False)["input_ids"]
    assert encoded.input_ids[0][len(before) : -len(after)] == record[:5] and encoded.longest > limit
    with pytest.raises(
        CadftError,
        match=r"train.max_length=4 leaves no room for the record: the head=verbalizer prompt alone takes \d+ tokens",
    ):
        encode(RECORDS, tokenizer, VERBALIZER, 4)
    classifier = encode(RECORDS, tokenizer, CLASSIFIER, 6)
    assert classifier.input_ids == [tokenizer(text)["input_ids"][:6] for text in RECORDS]


def test_answer_words_must_start_with_different_tokens(tiny):
    _, tokenizer = tiny
    with pytest.raises(CadftError, match=r"head\.answer_no='Yes' and head\.answer_yes='Yes' start with the same token"):
        answer_token_ids(tokenizer, replace(VERBALIZER, answer_no="Yes"))


def test_a_verbalizer_run_trains_reloads_and_faces_the_zero_shot_baseline(train_config, tmp_path):
    run = tmp_path / "run"
    cfg = train_config("head=verbalizer", "baselines.which=[logistic,zero_shot]")
    metrics = run_training(cfg, run)
    assert set(metrics["comparison"]) == {"logistic", "zero_shot", "oracle"}
    zero_shot = metrics["comparison"]["zero_shot"]
    assert 0 < zero_shot["auroc"] < 1 and zero_shot["delta_auroc"]["value"] == pytest.approx(
        metrics["test"]["auroc"] - zero_shot["auroc"]
    )
    # The saved model reloads to the same scores (the head and the prompt come back from the run folder and config).
    predictions = [json.loads(line) for line in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    from cadft.data.prepare import prepare

    table = prepare(cfg).table()
    test = [p for p in predictions if p["split"] == "test"][:16]
    texts = dict(zip(table["eid"].to_list(), table["text"].to_list()))
    reloaded = score_texts(
        load_model(run / "model"),
        tokenizer,
        [texts[p["eid"]] for p in test],
        head=cfg.head,
        batch_size=8,
        max_length=int(cfg.train.max_length),
        device="cpu",
    )
    assert reloaded.tolist() == pytest.approx([p["raw_score"] for p in test], abs=1e-5)
    # The zero-shot score is the untrained model's: training moved the trained one away from it.
    assert metrics["test"]["raw"]["auroc"] != zero_shot["auroc"]


def test_zero_shot_scores_are_computed_once_and_reused(train_config, monkeypatch):
    import polars as pl

    from cadft.data.prepare import prepare
    from cadft.eval.baselines.common import splits_of
    from cadft.eval.baselines.zero_shot import zero_shot_scores
    from cadft.train import model as model_module

    cfg = train_config()
    splits = splits_of(prepare(cfg).table())
    splits = {name: rows.head(40) for name, rows in splits.items()}
    validation, test, info = zero_shot_scores(splits, cfg, "cpu")
    assert validation.height == test.height == 40 and info["train_records"] == 0 and test["prob"].n_unique() > 1

    def no_model(*args, **kwargs):
        raise AssertionError("the backbone was loaded again")

    monkeypatch.setattr(model_module, "zero_shot_model", no_model)
    again = zero_shot_scores(splits, cfg, "cpu")
    assert again[0].equals(validation) and again[1].equals(test)
    changed = splits | {"test": splits["test"].with_columns(pl.col("text") + " The sex is Male.")}
    with pytest.raises(AssertionError, match="loaded again"):  # other records: other scores, not the cached ones
        zero_shot_scores(changed, cfg, "cpu")


def test_zero_shot_runs_in_the_configured_precision(train_config, monkeypatch):
    """fp32 by default (bf16 reorders the untrained model's close scores, bench/README.md); the precision is part of
    the cache key, so a bf16 result is never served for an fp32 request."""
    import torch

    from cadft.data.prepare import prepare
    from cadft.eval.baselines.common import splits_of
    from cadft.eval.baselines.zero_shot import zero_shot_scores
    from cadft.train import model as model_module

    built = []
    real = model_module.zero_shot_model

    def recording(*args, **kwargs):
        model = real(*args, **kwargs)
        built.append(next(model.parameters()).dtype)
        return model

    monkeypatch.setattr(model_module, "zero_shot_model", recording)
    cfg = train_config()
    assert cfg.baselines.zero_shot_dtype == "fp32"
    splits = {name: rows.head(24) for name, rows in splits_of(prepare(cfg).table()).items()}
    fp32 = zero_shot_scores(splits, cfg, "cpu")
    cfg = replace(cfg, baselines=replace(cfg.baselines, zero_shot_dtype="bf16"))
    bf16 = zero_shot_scores(splits, cfg, "cpu")
    assert built == [torch.float32, torch.bfloat16]
    assert not fp32[1]["prob"].equals(bf16[1]["prob"])


def test_question_first_puts_the_question_before_the_record_in_the_shared_prefix(tiny):
    _, tokenizer = tiny
    chat = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    chat.chat_template = CHAT_TEMPLATE
    first = replace(VERBALIZER, question_first=True)
    ids = encode(RECORDS[:1], chat, first, 512).input_ids[0]
    assert chat.decode(ids) == f"<s>user\n{VERBALIZER.question}\n\n{RECORDS[0]}</s>\n<s>assistant\n"
    before, _ = prompt_ids(tokenizer, first)  # no chat template: bos + question, then the record, then "Answer:"
    assert tokenizer.decode(before) == (tokenizer.bos_token or "") + VERBALIZER.question + "\n"
    assert len(before) > len(prompt_ids(tokenizer, VERBALIZER)[0])
