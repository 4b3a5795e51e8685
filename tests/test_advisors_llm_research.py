"""The LLM researcher and the scripted server's own command line (no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _llm_server import LLMServer

pytest.importorskip("openai")

from _llm_common import (  # noqa: E402
    CONTEXT,
    NO_WAIT,
    SCRIPT,
    Replace,
    chat,
)

from hagfish_jax.shell.advisors.context import Analysis, Result  # noqa: E402
from hagfish_jax.shell.advisors.llm import (  # noqa: E402
    ROLES,
    Chat,
    Endpoint,
    LLMAnalyst,
    LLMError,
    LLMResearcher,
    endpoints,
    llm_roles,
)

HITS = [
    Result("Lower the rate", "Halve the learning rate when the loss climbs.", "kb: lr"),
    Result("More decay", "Raise weight decay tenfold against a digits-sized gap.", "kb: wd"),
]
REMEDIES = json.dumps({"remedies": [
    {"title": "Halve the learning rate", "advice": "Go from 0.01 to 0.005."},
    {"title": "Raise weight decay", "advice": "Go from 0.01 to 0.05."},
]})


class Search:
    """A search hook that records its queries and returns fixed hits."""

    def __init__(self, hits=HITS):
        self.hits, self.queries = list(hits), []

    def __call__(self, query: str):
        self.queries.append(query)
        return self.hits


def researcher(server: LLMServer, search=None, **kw) -> LLMResearcher:
    sanitizer = kw.pop("sanitizer", None)
    return LLMResearcher(chat(server), Search() if search is None else search,
                         sanitizer=sanitizer, **kw)


def test_researcher_turns_the_hits_into_remedies(server):
    server.script["researcher"] = [REMEDIES]
    search = Search()
    out = researcher(server, search).research(["loss rises", "overfitting"], CONTEXT)
    assert search.queries == ["loss rises overfitting"]  # the hook ran first, once
    source = "llm researcher: test-model from kb: lr; kb: wd"
    assert out == (Result("Halve the learning rate", "Go from 0.01 to 0.005.", source),
                   Result("Raise weight decay", "Go from 0.01 to 0.05.", source))
    body = server.bodies("researcher")[0]
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["remedies"]
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert "ROLE: researcher" in system and "learning_rate: float in" in system
    for hit in HITS:  # the search hook's results reach the model
        assert hit.title in user and hit.snippet in user and hit.source in user
    assert "loss rises, overfitting" in user and "overfitting" in user.split("DIAGNOSIS")[1]
    assert "val_loss_slope=0.02" in user and '"optimizer": "adam"' in user
    assert "JSON only" in user


def test_researcher_skips_malformed_remedies_and_keeps_k(server):
    long = "x" * 1000
    server.script["researcher"] = [json.dumps({"remedies": [
        "just text", {"title": "No advice"}, {"title": 3, "advice": "numbers"},
        {"title": " ", "advice": "blank title"}, {"title": "Long", "advice": long},
        {"title": "Second", "advice": "kept"}, {"title": "Third", "advice": "cut by k"},
    ]})]
    out = researcher(server, k=2).research(["plateau"], CONTEXT)
    assert [r.title for r in out] == ["Long", "Second"]
    assert out[0].snippet == "x" * 400
    assert all(r.source.startswith("llm researcher: test-model") for r in out)


@pytest.mark.parametrize("content", ['{"remedies": []}', '{"notes": "none"}',
                                     '{"remedies": [{"title": "only"}]}',
                                     '{"remedies": "do better"}'])
def test_researcher_without_usable_remedies_returns_the_hits(server, content):
    server.script["researcher"] = [content]
    assert researcher(server).research(["plateau"], CONTEXT) == tuple(HITS)


def test_researcher_without_hits_asks_the_model_alone(server):
    server.script["researcher"] = [REMEDIES]
    out = researcher(server, Search(hits=[]), k=1).research(["plateau"], None)
    assert out == (Result("Halve the learning rate", "Go from 0.01 to 0.005.",
                          "llm researcher: test-model"),)
    assert "SEARCH RESULTS:\n(none)" in server.bodies("researcher")[0]["messages"][1]["content"]
    with LLMServer() as s:  # searching nothing at all
        assert LLMResearcher(chat(s), None).research(["plateau"], CONTEXT) == ()
        assert researcher(s, k=0).research(["plateau"], CONTEXT) == ()
        assert s.count() == 1 and s.requests[0]["role"] == "researcher"
    with pytest.raises(ValueError, match="k must be"):
        researcher(server, k=-1)


def test_researcher_failures_raise(server):
    server.script["researcher"] = [401]
    with pytest.raises(LLMError, match="researcher: the server answered 401"):
        researcher(server).research(["plateau"], CONTEXT)

    def broken(query):
        raise RuntimeError("search is down")

    with pytest.raises(RuntimeError, match="search is down"):
        researcher(server, broken).research(["plateau"], CONTEXT)


def test_researcher_prompt_passes_the_sanitizer():
    script = {"researcher": [REMEDIES]}
    sanitizer = Replace("digits")
    with LLMServer(script, forbidden=["digits"]) as s:
        out = researcher(s, sanitizer=sanitizer).research(["digits overfitting"], CONTEXT)
        assert s.violations == [] and "DATASET" in json.dumps(s.bodies())
        assert len(out) == 2
    assert sanitizer.calls == 2  # system and user
    with LLMServer(script, forbidden=["digits"]) as s:  # unsanitized, the hit leaks
        researcher(s).research(["overfitting"], CONTEXT)
        assert s.violations


def test_llm_roles_builds_the_researcher_when_it_has_an_endpoint():
    search = Search()
    with LLMServer({**SCRIPT, "researcher": [REMEDIES]}) as s:
        eps = endpoints(base_url=s.base_url, model="m", env={})
        roles = llm_roles(eps, sleep=NO_WAIT, search=search)
        assert isinstance(roles["researcher"], LLMResearcher)
        notes = roles["researcher"].research(["plateau"], CONTEXT)
        assert notes[0].source == "llm researcher: m from kb: lr; kb: wd"
        assert search.queries == ["plateau"]
        without = {r: e for r, e in eps.items() if r != "researcher"}
        assert sorted(llm_roles(without, sleep=NO_WAIT)) == [
            "analyst", "consultant_a", "consultant_b", "supervisor"]
        # the default hook is the shipped knowledge base
        default = llm_roles(eps, sleep=NO_WAIT)["researcher"]
        default.research(["learning rate too high"], CONTEXT)
        user = s.bodies("researcher")[-1]["messages"][1]["content"]
        assert "hagfish knowledge base: " in user


def test_council_falls_back_when_the_llm_researcher_fails():
    from hagfish_jax.shell.advisors.council import Council

    events = []
    with LLMServer({"researcher": [500]}) as s:
        endpoint = Endpoint(s.base_url, "m", retries=0)
        council = Council(researcher=LLMResearcher(Chat(endpoint, sleep=NO_WAIT), Search()),
                          on_event=events.append)
        reviewed = council.review(CONTEXT._replace(flags=(), features={}))
    # the search's hits are kept: only the model's summary of them was lost
    assert reviewed.notes == tuple(HITS)
    assert [e["role"] for e in events if e["kind"] == "fallback"] == ["researcher"]


# -- the scripted server's command line ------------------------------------------------


def test_scripted_server_command_line_serves_the_default_script():
    import openai

    from hagfish_jax.shell.advisors.scripted_server import DEFAULT_SCRIPT

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hagfish_jax.shell.advisors.scripted_server", "--port", "0"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert not url.startswith("http://127.0.0.1:0/")  # the real port, not 0
        client = openai.OpenAI(base_url=url, api_key="unused", timeout=10.0, max_retries=0)
        reply = client.chat.completions.create(
            model="scripted",
            messages=[{"role": "system", "content": "ROLE: analyst"},
                      {"role": "user", "content": "Read the curves."}],
        )
        answer = json.loads(reply.choices[0].message.content)
        assert answer == json.loads(DEFAULT_SCRIPT["analyst"][0])
        assert answer["keywords"] and isinstance(answer["analysis"], str)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0


def test_scripted_server_default_script_is_valid_for_the_reference_space():
    from hagfish_jax.shell.advisors.scripted_server import DEFAULT_SCRIPT
    from hagfish_jax.shell.advisors.validate import validate
    from hagfish_jax.tasks.classification import hpo_space

    assert set(DEFAULT_SCRIPT) == set(ROLES)
    for role in ("consultant_a", "consultant_b", "supervisor"):
        advice = json.loads(DEFAULT_SCRIPT[role][0])
        assert validate(advice["hparams"], hpo_space).adjustments == [], role
    assert json.loads(DEFAULT_SCRIPT["consultant_a"][0])["hparams"] == {"learning_rate": 5e-4}
    assert len(json.loads(DEFAULT_SCRIPT["researcher"][0])["remedies"]) == 2
    assert json.loads(DEFAULT_SCRIPT["analyst"][0])["keywords"]


def test_scripted_server_reads_a_script_file(tmp_path):
    from hagfish_jax.shell.advisors.scripted_server import load_script

    good = tmp_path / "script.json"
    good.write_text(json.dumps({"analyst": [503, '{"keywords": [], "analysis": "x"}']}))
    script = load_script(str(good))
    with LLMServer(script) as s:
        endpoint = Endpoint(s.base_url, "m", retries=1)
        analysis = LLMAnalyst(Chat(endpoint, sleep=NO_WAIT)).analyse(CONTEXT)
    assert analysis == Analysis((), "x")
    for bad in ({"analyst": [1.5]}, {"analyst": "text"}, ["x"], {"analyst": [True]}):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            load_script(str(path))
