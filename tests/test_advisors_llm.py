"""The LLM council roles against a scripted loopback server: keys, redaction, the
sanitizer, endpoint resolution and the supervisor (no network, no provider)."""

from __future__ import annotations

import json

import pytest
from _llm_server import LLMServer, Status

pytest.importorskip("openai")

from _llm_common import (  # noqa: E402
    CONTEXT,
    GOOD,
    KEY,
    NO_WAIT,
    SCRIPT,
    SUPERVISOR_KEY,
    Replace,
    chat,
    consultant,
)

from hagfish_jax.shell.advisors.context import Advice, Analysis  # noqa: E402
from hagfish_jax.shell.advisors.llm import (  # noqa: E402
    ROLES,
    Endpoint,
    LLMAnalyst,
    LLMConsultant,
    LLMError,
    LLMSupervisor,
    endpoints,
    llm_roles,
)

ENV = {
    "HAGFISH_LLM_BASE_URL": "http://unused.invalid/v1",
    "HAGFISH_LLM_MODEL": "shared-model",
    "HAGFISH_LLM_API_KEY": KEY,
    "HAGFISH_LLM_API_KEY_SUPERVISOR": SUPERVISOR_KEY,
}


def test_keys_travel_only_in_the_authorization_header():
    records = []
    with LLMServer(SCRIPT, forbidden=[KEY, SUPERVISOR_KEY, "sk-test"]) as s:
        eps = endpoints(base_url=s.base_url, env=ENV)
        roles = llm_roles(eps, transcript=records.append, sleep=NO_WAIT)
        a = roles["consultant_a"].propose(CONTEXT, None)
        b = roles["consultant_b"].propose(CONTEXT, a)
        final = roles["supervisor"].decide(CONTEXT, [a, b])
        analysis = roles["analyst"].analyse(CONTEXT)
        assert s.violations == []
        auth = {r["role"]: r["headers"]["authorization"] for r in s.requests}
    assert auth == {
        "consultant_a": f"Bearer {KEY}",
        "consultant_b": f"Bearer {KEY}",
        "supervisor": f"Bearer {SUPERVISOR_KEY}",
        "analyst": f"Bearer {KEY}",
    }
    assert final.flags == ("llm", "supervisor")
    assert analysis == Analysis(("overfitting", "weight decay"), "gap grows")
    dumped = json.dumps(records)
    assert len(records) == 4 and KEY not in dumped and SUPERVISOR_KEY not in dumped
    for ep in eps.values():
        assert KEY not in repr(ep) and KEY not in str(ep)
        assert SUPERVISOR_KEY not in repr(ep)
    assert eps["supervisor"].api_key == SUPERVISOR_KEY


def test_error_messages_redact_the_key(server):
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "auth"}}
    server.script["consultant_a"] = [Status(401, body=echo)]
    records = []
    with pytest.raises(LLMError) as caught:
        consultant(server, transcript=records.append).propose(CONTEXT, None)
    assert KEY not in str(caught.value) and "***" in str(caught.value)
    assert KEY not in json.dumps(records)
    # also after the retries run out
    server.script["consultant_b"] = [Status(500, body=echo)]
    with pytest.raises(LLMError) as caught:
        LLMConsultant(chat(server, retries=1), "consultant_b").propose(CONTEXT, None)
    assert KEY not in str(caught.value) and "***" in str(caught.value)


def test_url_credentials_are_hidden():
    endpoint = Endpoint("http://user:hunter22@127.0.0.1:9/v1", "m", KEY)
    assert "hunter22" not in repr(endpoint) and "127.0.0.1:9" in repr(endpoint)


# -- sanitizer -------------------------------------------------------------------------


def test_every_text_passes_the_sanitizer():
    sanitizer = Replace("digits")
    with LLMServer(SCRIPT, forbidden=["digits"]) as s:
        roles = llm_roles(endpoints(base_url=s.base_url, model="m", env={}),
                          sanitizer=sanitizer, sleep=NO_WAIT)
        a = roles["consultant_a"].propose(CONTEXT, None)
        a = a._replace(rationale="digits again")
        roles["consultant_b"].propose(CONTEXT, a)
        roles["supervisor"].decide(CONTEXT, [a, a])
        roles["analyst"].analyse(CONTEXT)
        assert s.violations == []
        assert "DATASET" in json.dumps(s.bodies())
    assert sanitizer.calls == 8  # system and user, four roles
    # without the sanitizer the same context would leak
    with LLMServer(SCRIPT, forbidden=["digits"]) as s:
        LLMAnalyst(chat(s)).analyse(CONTEXT)
        assert s.violations


# -- endpoints() -----------------------------------------------------------------------


def test_endpoints_resolution():
    env = {
        "HAGFISH_LLM_BASE_URL": "http://env/v1",
        "HAGFISH_LLM_MODEL": "env-model",
        "HAGFISH_LLM_MODEL_ANALYST": "env-analyst",
        "HAGFISH_LLM_API_KEY_CONSULTANT_A": "key-a",
    }
    eps = endpoints(env=env)
    assert set(eps) == set(ROLES)
    assert eps["consultant_b"].base_url == "http://env/v1"
    assert eps["analyst"].model == "env-analyst" and eps["supervisor"].model == "env-model"
    assert eps["consultant_a"].api_key == "key-a" and eps["consultant_b"].api_key == "unused"
    eps = endpoints(base_url="http://arg/v1", model="arg-model", models={"supervisor": "big"},
                    env=env, timeout=5.0, retries=1)
    assert eps["supervisor"].model == "big" and eps["analyst"].model == "arg-model"
    assert eps["analyst"].base_url == "http://arg/v1"
    assert (eps["analyst"].timeout, eps["analyst"].retries) == (5.0, 1)
    eps = endpoints(env={**env, "HAGFISH_LLM_API_KEY": "shared"})
    assert eps["consultant_a"].api_key == "key-a" and eps["researcher"].api_key == "shared"


def test_endpoints_errors():
    with pytest.raises(ValueError, match="consultant_a.*HAGFISH_LLM_BASE_URL"):
        endpoints(model="m", env={})
    with pytest.raises(ValueError, match="consultant_a.*HAGFISH_LLM_MODEL"):
        endpoints(base_url="http://x/v1", env={})
    with pytest.raises(ValueError, match="consultant_b.*HAGFISH_LLM_MODEL_CONSULTANT_B"):
        endpoints(base_url="http://x/v1", models={"consultant_a": "m"}, env={})
    with pytest.raises(ValueError, match="unknown LLM role"):
        endpoints(base_url="http://x/v1", model="m", models={"critic": "m"}, env={})
    with pytest.raises(ValueError, match="no LLM endpoint"):
        llm_roles({})


def test_supervisor_sees_the_proposals(server):
    server.script["supervisor"] = [GOOD]
    proposals = [Advice({"learning_rate": 0.002}, "slower", ("llm", "consultant_a")),
                 Advice({"weight_decay": 0.07}, "more decay", ("llm", "consultant_b"))]
    final = LLMSupervisor(chat(server)).decide(CONTEXT, proposals)
    assert final.hparams == {"learning_rate": 0.003, "weight_decay": 0.05}
    user = server.bodies("supervisor")[0]["messages"][1]["content"]
    assert "slower" in user and "more decay" in user and "0.07" in user


# -- researcher ------------------------------------------------------------------------
