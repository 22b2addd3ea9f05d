"""The operators file: people, their tenants and roles, found by token or proxy header."""

from __future__ import annotations

import hashlib
from ipaddress import ip_network
from pathlib import Path

import pytest

from services.runtime.operators import OperatorsFileError, load_operators

ANNA = """
operators:
  - name: Anna Andersson
    email: anna.andersson@lerum.se
    tenants: [lerum]
    role: publisher
    token_sha256: {digest}
  - name: Viktor Viewer
    email: viktor@ale.se
    tenants: [ale]
    role: viewer
    token_sha256: {other}
"""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "operators.yaml"
    path.write_text(text)
    return path


def test_a_person_is_found_by_their_token_and_acts_for_their_tenants(tmp_path: Path) -> None:
    path = _file(tmp_path, ANNA.format(digest=_digest("anna"), other=_digest("viktor")))
    directory = load_operators(path)
    anna = directory.by_authorization("Bearer anna")
    assert anna is not None
    assert (anna.name, anna.role) == ("Anna Andersson", "publisher")
    assert anna.acts_for("lerum")
    assert not anna.acts_for("ale")
    viktor = directory.by_token("viktor")
    assert viktor is not None
    assert not viktor.may_act
    assert directory.by_token("nobody") is None
    assert directory.by_authorization("Basic anna") is None
    assert directory.by_authorization(None) is None


def test_the_shared_token_is_a_publisher_for_every_tenant_named_operator() -> None:
    directory = load_operators(None, shared_token="shared")
    who = directory.by_authorization("Bearer shared")
    assert who is not None
    assert (who.name, who.role) == ("operator", "publisher")
    assert who.acts_for("lerum")
    assert who.acts_for("ale")


PROXY = "10.0.7.3"


def test_a_trusted_proxy_header_names_a_person_by_email(tmp_path: Path) -> None:
    path = _file(tmp_path, ANNA.format(digest=_digest("anna"), other=_digest("viktor")))
    directory = load_operators(
        path, proxy_header="X-Forwarded-Email", proxy_networks=[ip_network("10.0.7.0/24")]
    )
    who = directory.by_proxy({"X-Forwarded-Email": "Anna.Andersson@lerum.se"}, PROXY)
    assert who is not None
    assert who.name == "Anna Andersson"
    assert directory.by_proxy({"X-Forwarded-Email": "mallory@example.org"}, PROXY) is None
    unset = load_operators(path)
    assert unset.by_proxy({"X-Forwarded-Email": "anna.andersson@lerum.se"}, PROXY) is None


@pytest.mark.parametrize("peer", ["10.0.8.1", "127.0.0.1", "::1", "", None, "not-an-address"])
def test_the_header_from_anywhere_but_the_proxy_is_not_believed(
    tmp_path: Path, peer: str | None
) -> None:
    # Any pod that reaches the gate could otherwise send a publisher's e-mail.
    path = _file(tmp_path, ANNA.format(digest=_digest("anna"), other=_digest("viktor")))
    directory = load_operators(
        path, proxy_header="X-Forwarded-Email", proxy_networks=[ip_network("10.0.7.0/24")]
    )
    assert directory.by_proxy({"X-Forwarded-Email": "anna.andersson@lerum.se"}, peer) is None


def test_a_proxy_reached_over_ipv4_mapped_ipv6_is_believed(tmp_path: Path) -> None:
    path = _file(tmp_path, ANNA.format(digest=_digest("anna"), other=_digest("viktor")))
    directory = load_operators(
        path, proxy_header="X-Forwarded-Email", proxy_networks=[ip_network("10.0.7.3")]
    )
    who = directory.by_proxy({"X-Forwarded-Email": "anna.andersson@lerum.se"}, "::ffff:10.0.7.3")
    assert who is not None


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (ANNA.format(digest="not-a-digest", other=_digest("v")), "operators.0.token_sha256"),
        (ANNA.format(digest=_digest("a"), other=_digest("v")).replace("viewer", "boss"), "role"),
        ("operators:\n  - name: X\n", "operators.0.email"),
        ("operators: [", "not YAML"),
    ],
)
def test_a_bad_operators_file_is_refused_with_one_message_naming_the_entry(
    tmp_path: Path, text: str, names: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(OperatorsFileError, match=names) as caught:
        load_operators(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value).strip()
