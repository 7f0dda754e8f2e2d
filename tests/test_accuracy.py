"""Accuracy gate on the public evaluation set (never trained on), with the real model.

Targets of the foundation issue: FAQ top-1 >= 90% in scope, >= 85% of out-of-scope
questions rejected, every handoff request recognised. `make eval` gives the full report.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.faq.evaluation import load_public_set, predict, score
from bot.faq.store import get_store
from bot.settings import get_settings


@pytest.fixture(scope="module")
def public_scores(nlu_agent) -> dict:
    predictions = asyncio.run(predict(nlu_agent, load_public_set(), get_settings().faq_min_confidence))
    return score(predictions, set(get_store().catalog.topics))


def test_faq_top1_accuracy_on_public_set(public_scores):
    block = public_scores["faq_top1"]
    assert block["total"] >= 50
    assert block["rate"] >= 0.90, public_scores["misses"]


def test_out_of_scope_questions_get_the_fallback(public_scores):
    block = public_scores["out_of_scope_rejection"]
    assert block["total"] >= 10
    assert block["rate"] >= 0.85, public_scores["misses"]


def test_every_handoff_request_is_recognised(public_scores):
    block = public_scores["human_handoff"]
    assert block["total"] >= 2
    assert block["correct"] == block["total"], public_scores["misses"]
