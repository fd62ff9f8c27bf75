"""Scoring with the shared prompt prefix computed once equals plain scoring (within 1e-5 in probability): both heads,
the question before or after the record, a LoRA model before and after its adapters are merged, uneven batches."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from cadft.config.schema import CLASSIFIER, HeadVerbalizer
from cadft.eval.prefix_cache import MIN_PREFIX, shared_prefix
from cadft.eval.score import score_texts
from cadft.train.backbone import load_tokenizer, resolve_backbone
from cadft.train.head import encode
from cadft.train.model import build_model, merged_for_scoring
from tests.train.conftest import compose_group

VERBALIZER = HeadVerbalizer("verbalizer", "Will this person develop coronary artery disease?", None, "Yes", "No")
RECORDS = [
    f"The age at recruitment is {age} years. The sex is {sex}. The systolic blood pressure is {sbp} mmHg."
    + " The smoking status is Current." * (age % 3)
    for age, sex, sbp in [(63, "Male", 142), (47, "Female", 120), (58, "Female", 131), (69, "Male", 155),
                          (41, "Male", 118), (52, "Female", 167), (66, "Female", 139)]
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(cache_dir):
    """(folder, tokenizer) of the tiny backbone in the session cache."""
    backbone = compose_group("backbone/tiny")
    return resolve_backbone(backbone, cache_dir), load_tokenizer(backbone, cache_dir)


def _lora_model(tiny, head):
    """The tiny backbone with LoRA adapters whose B matrices are non-zero (a trained model's adapters change the
    logits; fresh ones would not)."""
    folder, tokenizer = tiny
    torch.manual_seed(0)
    model = build_model(compose_group("model/lora"), folder, tokenizer, head=head)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    return model.eval()


@pytest.mark.parametrize(
    "head", [CLASSIFIER, VERBALIZER, replace(VERBALIZER, question_first=True)], ids=["classifier", "last", "first"]
)
def test_prefix_reuse_scores_equal_plain_scoring(tiny, head):
    _, tokenizer = tiny
    encoded = encode(RECORDS, tokenizer, head, 512).input_ids
    assert shared_prefix(encoded, tokenizer.pad_token_id) >= MIN_PREFIX  # the prefix path is taken
    model = _lora_model(tiny, head)
    for scored in (model, merged_for_scoring(model)):
        plain, reused = (
            score_texts(scored, tokenizer, RECORDS, head=head, batch_size=3, max_length=512, device="cpu",
                        prefix_reuse=reuse)
            for reuse in (False, True)
        )  # fmt: skip
        assert reused.tolist() == pytest.approx(plain.tolist(), abs=1e-5)
        assert len(set(plain.round(5))) == len(RECORDS)  # the records are read: the check is not of constants


def test_the_question_first_shares_a_longer_prefix(tiny):
    _, tokenizer = tiny
    lengths = [
        shared_prefix(encode(RECORDS, tokenizer, head, 512).input_ids, tokenizer.pad_token_id)
        for head in (VERBALIZER, replace(VERBALIZER, question_first=True))
    ]
    assert lengths[1] > lengths[0] + 5


def test_the_shared_prefix_leaves_every_record_a_token_of_its_own():
    assert shared_prefix([[1, 2, 3], [1, 2, 3, 4]], pad_id=0) == 2  # not 3: the first would have nothing left
    assert shared_prefix([[1, 2, 3, 0], [1, 2, 3, 0, 5]], pad_id=0) == 2  # a pad-only suffix is no suffix
    assert shared_prefix([[1, 2, 3]], pad_id=0) == 0  # one record: nothing shared
    assert shared_prefix([[7, 2], [1, 2]], pad_id=0) == 0
