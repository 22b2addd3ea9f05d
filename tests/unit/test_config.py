"""The deployment file: the shipped one works, a bad one stops with file, key and problem."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH, ConfigError, load_deployment
from tests.conftest import LERUM_SECRET, SECRETS_ENV, with_outbound_secrets

SHIPPED = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "gatekeeper.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _error(tmp_path: Path, data: object, env: dict[str, str] = SECRETS_ENV) -> str:
    with pytest.raises(ConfigError) as caught:
        load_deployment(_write(tmp_path, data), env)
    return str(caught.value)


def test_shipped_configuration_has_both_municipalities() -> None:
    deployment = load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV)
    assert deployment.tenants["lerum"].sender.organization == "Lerums kommun"
    assert deployment.tenants["ale"].sender.organization == "Ale kommun"
    for tenant in deployment.tenants.values():
        routes = {c.name: (c.audience, c.transport.topic) for c in tenant.channels}  # type: ignore[union-attr]
        assert routes == {
            "intranet": ("internal", "intranet.notices"),
            "web": ("external", "external.web"),
            "social": ("external", "external.social"),
            "press": ("external", "external.press"),
        }
    assert deployment.secret("lerum") == SECRETS_ENV["GATEKEEPER_SECRET_LERUM"]
    assert deployment.ingest.max_body_bytes == 1024 * 1024
    assert deployment.tenants["ale"].policy.escalate_after == timedelta(hours=2)


def test_secrets_are_not_in_the_dumped_model() -> None:
    deployment = load_deployment(DEFAULT_CONFIG_PATH, SECRETS_ENV)
    assert SECRETS_ENV["GATEKEEPER_SECRET_LERUM"] not in deployment.model_dump_json()


def test_missing_secret_names_the_key_and_variable(tmp_path: Path) -> None:
    message = _error(
        tmp_path, SHIPPED, {"GATEKEEPER_SECRET_ALE": SECRETS_ENV["GATEKEEPER_SECRET_ALE"]}
    )
    assert str(tmp_path / "gatekeeper.yaml") in message
    assert "tenants.lerum.secret_env" in message
    assert "GATEKEEPER_SECRET_LERUM is not set" in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("plain-password", "whsec_"),
        ("whsec_!!!notbase64", "base64"),
        ("whsec_c2hvcnQ=", "too short"),
    ],
)
def test_malformed_secret_is_refused(tmp_path: Path, value: str, problem: str) -> None:
    message = _error(tmp_path, SHIPPED, {**SECRETS_ENV, "GATEKEEPER_SECRET_ALE": value})
    assert "tenants.ale.secret_env" in message
    assert problem in message
    assert value not in message


def test_bad_duration_names_the_key(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["lerum"]["policy"]["internal_lead"] = "soon"
    assert "tenants.lerum.policy.internal_lead:" in _error(tmp_path, data)


def test_negative_lead_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["policy"]["internal_lead"] = "-PT5M"
    assert "tenants.ale.policy.internal_lead: Value error, must not be negative" in _error(
        tmp_path, data
    )


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["sendr"] = {}
    assert "tenants.ale.sendr: Extra inputs are not permitted" in _error(tmp_path, data)


def test_transport_errors_point_into_the_channel_list(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["channels"][1]["transport"] = {"kind": "webhook", "url": "ftp://x"}
    assert "tenants.ale.channels[1].transport.url" in _error(tmp_path, data)


def test_unknown_transport_kind_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["channels"][1]["transport"] = {"kind": "fax"}
    assert "tenants.ale.channels[1].transport" in _error(tmp_path, data)


def test_a_tenant_needs_an_internal_channel(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["channels"] = data["tenants"]["ale"]["channels"][1:]
    assert "at least one internal channel" in _error(tmp_path, data)


def test_duplicate_channel_names_are_refused(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["channels"].append(data["tenants"]["ale"]["channels"][1])
    assert "repeated: web" in _error(tmp_path, data)


def test_content_check_parameters_are_required(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["policy"]["content_checks"] = [
        {"rule": "forbidden_words", "action": "block"}
    ]
    assert "tenants.ale.policy.content_checks[0]" in _error(tmp_path, data)


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    assert "not valid YAML" in _error(tmp_path, "tenants: [unclosed")
    assert "top level must be a mapping" in _error(tmp_path, "- just a list")
    with pytest.raises(ConfigError, match="file not found"):
        load_deployment(tmp_path / "nope.yaml", SECRETS_ENV)


def test_smtp_and_webhook_transports_load(tmp_path: Path) -> None:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["ale"]["channels"] += [
        {
            "name": "mail",
            "audience": "internal",
            "transport": {
                "kind": "smtp",
                "host": "localhost",
                "port": 2525,
                "from": "noreply@ale.se",
                "recipients": ["alla@ale.se"],
            },
        },
        {
            "name": "partner",
            "audience": "external",
            "transport": {"kind": "webhook", "url": "https://partner.example/hook"},
        },
    ]
    deployment = load_deployment(_write(tmp_path, with_outbound_secrets(data)), SECRETS_ENV)
    mail = deployment.tenants["ale"].channel("mail")
    assert mail is not None
    assert mail.transport.from_ == "noreply@ale.se"  # type: ignore[union-attr]


def _partner(data: dict[str, Any], **transport: Any) -> dict[str, Any]:
    data["tenants"]["lerum"]["channels"].append(
        {
            "name": "partner",
            "audience": "external",
            "transport": {"kind": "webhook", "url": "https://partner.example/hook", **transport},
        }
    )
    return data


def test_a_webhook_never_signs_with_the_cms_s_secret(tmp_path: Path) -> None:
    # A receiver that verifies our signature could otherwise sign events as the CMS.
    data = _partner(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    with pytest.raises(ConfigError, match=r"tenants.lerum.channels\[4\].transport: a webhook"):
        load_deployment(_write(tmp_path, data), SECRETS_ENV)
    same = {**SECRETS_ENV, "GATEKEEPER_OUTBOUND_LERUM": LERUM_SECRET}
    with pytest.raises(ConfigError, match=r"tenants.lerum.outbound_secret_env: .* same secret"):
        load_deployment(_write(tmp_path, with_outbound_secrets(data)), same)
    own = _partner(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()), secret_env="PARTNER_KEY")
    with pytest.raises(ConfigError, match=r"channels\[4\].transport.secret_env: .* same secret"):
        load_deployment(_write(tmp_path, own), {**SECRETS_ENV, "PARTNER_KEY": LERUM_SECRET})


def test_a_webhook_signs_with_its_own_secret_else_the_tenant_s_outbound_one(
    tmp_path: Path,
) -> None:
    data = with_outbound_secrets(_partner(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())))
    deployment = load_deployment(_write(tmp_path, data), SECRETS_ENV)
    assert deployment.signing_secrets("lerum", "partner") == (
        SECRETS_ENV["GATEKEEPER_OUTBOUND_LERUM"],
    )


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://partner.example/hook", True),
        ("http://10.0.0.5/hook", True),
        ("https://partner.example/hook", False),
        ("http://127.0.0.1:9000/hook", False),
        ("http://localhost/hook", False),
        ("http://[::1]:9000/hook", False),
    ],
)
def test_webhooks_go_over_https_except_to_this_host(
    tmp_path: Path, url: str, refused: bool
) -> None:
    data = with_outbound_secrets(_partner(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())))
    data["tenants"]["lerum"]["channels"][-1]["transport"]["url"] = url
    if refused:
        with pytest.raises(ConfigError, match=r"channels\[4\].transport.url: .*must be https://"):
            load_deployment(_write(tmp_path, data), SECRETS_ENV)
    else:
        load_deployment(_write(tmp_path, data), SECRETS_ENV)


def test_config_check_says_valid_or_names_every_key_with_its_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.cli import main

    monkeypatch.delenv("GATEKEEPER_SECRET_ALE", raising=False)
    monkeypatch.setenv("GATEKEEPER_SECRET_LERUM", "whsec_x")
    assert main(["config", "check", str(DEFAULT_CONFIG_PATH)]) == 0
    said = capsys.readouterr().out.strip().splitlines()
    assert said[-1].endswith(": valid")
    assert said[:-1] == [
        f"{DEFAULT_CONFIG_PATH}: warning: tenants.ale.secret_env: "
        "GATEKEEPER_SECRET_ALE is not set here"
    ]
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["tenants"]["lerum"]["policy"]["internal_lead"] = "soon"
    del data["tenants"]["ale"]["sender"]
    _partner(data)  # a webhook with no secret of its own and no outbound one
    path = _write(tmp_path, data)
    assert main(["config", "check", str(path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    keys = sorted(line.removeprefix(f"{path}: ").split(": ")[0] for line in lines)
    assert keys == ["tenants.ale.sender", "tenants.lerum.policy.internal_lead"], lines
    fixed = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    path = _write(tmp_path, _partner(fixed))
    assert main(["config", "check", str(path)]) == 1
    assert "tenants.lerum.channels[4].transport: a webhook channel" in capsys.readouterr().out


STATUS_SECRET = "whsec_" + "c3RhdHVzLXdlYmhvb2stc2VjcmV0LTAxMjM0NTY3"


def _with_status_webhook(secret_env: str = "GATEKEEPER_STATUS_LERUM") -> dict[str, Any]:  # noqa: S107  (a variable name)
    raw = with_outbound_secrets(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    raw["tenants"]["lerum"]["status_webhook"] = {
        "url": "https://cms.lerum.se/gatekeeper/status",
        "secret_env": secret_env,
    }
    return raw


def test_a_status_webhook_signs_with_a_secret_of_its_own(tmp_path: Path) -> None:
    env = {**SECRETS_ENV, "GATEKEEPER_STATUS_LERUM": STATUS_SECRET}
    deployment = load_deployment(_write(tmp_path, _with_status_webhook()), env)
    assert deployment.signing_secrets("lerum", "cms-status") == (STATUS_SECRET,)
    assert deployment.tenants["ale"].status_webhook is None

    assert (
        "tenants.lerum.status_webhook.secret_env: environment variable "
        "GATEKEEPER_STATUS_LERUM is not set" in _error(tmp_path, _with_status_webhook())
    )
    same = _error(tmp_path, _with_status_webhook("GATEKEEPER_SECRET_LERUM"))
    assert "tenants.lerum.status_webhook.secret_env: holds the same secret" in same
    raw = _with_status_webhook()
    del raw["tenants"]["lerum"]["status_webhook"]["secret_env"]
    assert "tenants.lerum.status_webhook.secret_env: Field required" in _error(tmp_path, raw, env)


def test_the_status_webhook_s_channel_name_is_its_own(tmp_path: Path) -> None:
    raw = with_outbound_secrets(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    raw["tenants"]["lerum"]["channels"].append(
        {"name": "cms-status", "audience": "external", "transport": {"kind": "kafka", "topic": "x"}}
    )
    assert "the channel name cms-status is the status webhook's own" in _error(tmp_path, raw)
