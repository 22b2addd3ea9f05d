"""The environment read at start: what cannot work stops start-up, naming the variables."""

from __future__ import annotations

import pytest

from services.runtime.settings import SettingsError, load_settings


def test_a_proxy_header_without_the_proxy_s_addresses_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEKEEPER_TRUSTED_PROXY_HEADER", "X-Forwarded-Email")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "GATEKEEPER_TRUSTED_PROXY_HEADER" in str(refused.value)
    assert "GATEKEEPER_TRUSTED_PROXY_IPS" in str(refused.value)


def test_the_proxy_s_addresses_are_addresses_or_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEKEEPER_TRUSTED_PROXY_HEADER", "X-Forwarded-Email")
    monkeypatch.setenv("GATEKEEPER_TRUSTED_PROXY_IPS", "10.0.7.0/24, fd00::1")
    networks = load_settings().trusted_proxy_networks()
    assert [str(n) for n in networks] == ["10.0.7.0/24", "fd00::1/128"]
    monkeypatch.setenv("GATEKEEPER_TRUSTED_PROXY_IPS", "10.0.7.0/24,ingress")
    refusal = "GATEKEEPER_TRUSTED_PROXY_IPS: 'ingress' is no address"
    with pytest.raises(SettingsError, match=refusal):
        load_settings()


def test_a_short_operator_token_stops_start_up_where_a_minimum_is_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEKEEPER_OPERATOR_TOKEN", "demo-operator-token")
    assert load_settings().operator_token is not None, "no minimum asked: warned about only"
    monkeypatch.setenv("GATEKEEPER_MIN_TOKEN_LENGTH", "32")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "GATEKEEPER_OPERATOR_TOKEN" in str(refused.value)
    assert "GATEKEEPER_MIN_TOKEN_LENGTH" in str(refused.value)
    assert "demo-operator-token" not in str(refused.value), "the token itself is not shown"
    monkeypatch.setenv("GATEKEEPER_OPERATOR_TOKEN", "k" * 32)
    assert load_settings().min_token_length == 32
