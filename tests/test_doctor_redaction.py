"""No credential of a URL reaches doctor's output: the model endpoints' user info, query
strings and fragments are redacted wherever doctor prints a URL."""

from __future__ import annotations

import pytest

from aperag_pg.settings import redact_url, redact_urls

from .cli_support import run_cli, verdicts

LLM_SECRET, QUERY_SECRET, KEY_SECRET = "llm-Pa55-7c1d", "query-key-0b9e", "sk-doctor-44aa"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@llm.example/v1", "https://user:***@llm.example/v1"),
        ("https://token@llm.example:8443/v1", "https://***@llm.example:8443/v1"),
        ("https://:pw@h/v1", "https://***@h/v1"),
        ("https://u:p@ss:w@h/v1", "https://u:***@h/v1"),  # an unencoded "@" in the password
        ("https://user:pa/ss@h/v1?x=1", "https://user:***@h/v1?x=***"),  # an unencoded "/"
        ("https://[::1]:8/v1", "https://[::1]:8/v1"),
        ("https://h/v1?key=abc&api-version=2024", "https://h/v1?key=***&api-version=***"),
        ("https://h/v1?TOKEN&empty=", "https://h/v1?***&empty="),
        ("https://h/v1#access_token=abc", "https://h/v1#***"),
        ("https://u:p@h/x?k=v#f", "https://u:***@h/x?k=***#***"),
        ("user:pw@h:11434", "user:***@h:11434"),  # no scheme: still user info
        ("http://localhost:11434", "http://localhost:11434"),  # nothing secret: unchanged
        ("https://h/models/@cf/llama?x=1", "https://h/models/@cf/llama?x=***"),  # "@" in a path
        (
            "postgresql://u:p@db:5432/rag?sslmode=require",
            "postgresql://u:***@db:5432/rag?sslmode=***",
        ),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # redacting twice changes nothing


def test_redact_urls_in_text_keeps_the_sentence():
    text = "LLM: openai m at https://u:pw@h/v1; embeddings: e at https://e/v1?key=s3, 8 (see http://a/b)."
    assert redact_urls(text) == (
        "LLM: openai m at https://u:***@h/v1; embeddings: e at https://e/v1?key=***, 8 "
        "(see http://a/b)."
    )
    assert redact_urls("no url: user@host, 100%") == "no url: user@host, 100%"


def test_doctor_prints_no_model_endpoint_secret(base_settings):
    result = run_cli(
        base_settings,
        "doctor",
        LLM_BINDING="openai",
        LLM_MODEL="gpt-test",
        LLM_BINDING_HOST=f"https://svc:{LLM_SECRET}@llm.example.invalid/v1",
        LLM_BINDING_API_KEY=KEY_SECRET,
        EMBEDDING_BINDING="openai",
        EMBEDDING_MODEL="embed-test",
        EMBEDDING_DIM="8",
        EMBEDDING_BINDING_HOST=f"https://embed.example.invalid/v1?key={QUERY_SECRET}#frag",
    )
    output = result.stdout + result.stderr
    assert verdicts(result.stdout)["models"] == "OK", output
    # the endpoints are still named, for the reader to check
    assert "https://svc:***@llm.example.invalid/v1" in result.stdout, output
    assert "https://embed.example.invalid/v1?key=***#***" in result.stdout, output
    for secret in (LLM_SECRET, QUERY_SECRET, KEY_SECRET):
        assert secret not in output
