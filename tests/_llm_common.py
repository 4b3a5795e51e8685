"""What the LLM advisor tests share: a key, a space, a context, and a Chat pointed at
the scripted loopback server (the ``server`` fixture is in conftest.py)."""

from __future__ import annotations

from _llm_server import LLMServer

import hagfish_jax as hj
from hagfish_jax.shell.advisors.context import AdviceContext, Result
from hagfish_jax.shell.advisors.llm import (
    Chat,
    Endpoint,
    LLMConsultant,
)

KEY = "sk-test-SECRET"
SUPERVISOR_KEY = "sk-test-SUPERVISOR-ONLY"
NO_WAIT = lambda seconds: None  # noqa: E731

SPACE = hj.Space(
    learning_rate=hj.LogUniform(1e-4, 1e-1),
    weight_decay=hj.Uniform(0.0, 0.1),
    batch_size=hj.Choice([32, 64, 128]),
    optimizer=hj.Choice(["adam", "sgd"]),
    layers=hj.IntUniform(1, 4),
)
CONTEXT = AdviceContext(
    space=SPACE,
    hparams={"learning_rate": 0.01, "weight_decay": 0.01, "batch_size": 64,
             "optimizer": "adam", "layers": 2},
    history=[
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1) + 0.01 * e,
         "val_accuracy": 0.5 + 0.01 * e, "learning_rate": 0.01, "dataset": "digits"}
        for e in range(30)
    ],
    flags=("overfitting",),
    features={"val_loss_slope": 0.02},
    notes=(Result("Regularising small digits models", "On digits, weight decay helps.", "web"),),
    budget_left=3,
    round=2,
    trials=[{"hparams": {"learning_rate": 0.001}, "val_accuracy": 0.81}],
)
GOOD = '{"hparams": {"learning_rate": 0.003, "weight_decay": 0.05}, "rationale": "less overfit"}'


def chat(server: LLMServer, *, timeout: float = 5.0, retries: int = 3, **kw) -> Chat:
    endpoint = Endpoint(server.base_url, "test-model", KEY, timeout=timeout, retries=retries)
    return Chat(endpoint, sleep=kw.pop("sleep", NO_WAIT), **kw)


def consultant(server: LLMServer, **kw) -> LLMConsultant:
    return LLMConsultant(chat(server, **kw), "consultant_a")


SCRIPT = {
    "consultant_a": [GOOD],
    "consultant_b": [GOOD],
    "supervisor": [GOOD],
    "analyst": ['{"keywords": ["overfitting", 3, "weight decay"], "analysis": "gap grows"}'],
}


class Replace:
    """A tiny sanitizer: one word becomes DATASET."""

    def __init__(self, word: str):
        self.word = word
        self.calls = 0

    def clean(self, text: str) -> str:
        self.calls += 1
        return text.replace(self.word, "DATASET")
