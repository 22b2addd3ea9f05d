"""A real OpenID Connect provider on localhost: panva's oidc-provider (npm, installed by
scripts/test), run with Node from tests/oidc, its keys chosen by the test."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import RSAKey

from services.runtime.broker import free_port
from tests.harness import wait_until

PROVIDER = Path(__file__).resolve().parents[1] / "oidc" / "provider.mjs"


def signing_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class OidcProvider:
    """The provider at ``http://localhost:<port>``: another site than the console on
    127.0.0.1, as a municipality's provider is."""

    workdir: Path
    console: str  # the console's public address, ending in /console
    people: dict[str, dict[str, Any]]
    keys: list[RSAKey]
    client_id: str = "gatekeeper-console"
    client_secret: str = "a-client-secret-of-the-console-at-the-provider"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://localhost:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "GATEKEEPER_OIDC_ISSUER": self.issuer,
            "GATEKEEPER_OIDC_CLIENT_ID": self.client_id,
            "GATEKEEPER_OIDC_CLIENT_SECRET": self.client_secret,
            "GATEKEEPER_OIDC_PROVIDER_NAME": "Testkommunens konto",
            "GATEKEEPER_OIDC_ROLES_CLAIM": "roles",
            "GATEKEEPER_CONSOLE_URL": self.console,
        }

    def start(self) -> OidcProvider:
        node = shutil.which("node")
        assert node, "node is missing: scripts/test installs it"
        assert (PROVIDER.parent / "node_modules" / "oidc-provider").is_dir(), (
            "oidc-provider is missing: scripts/test installs it with npm"
        )
        config = self.workdir / f"oidc-{self.port}.json"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "issuer": self.issuer,
                    "client": {
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                        "redirect_uris": [f"{self.console}/oidc/callback"],
                        "post_logout_redirect_uris": [f"{self.console}/login"],
                    },
                    "jwks": {"keys": [k.as_dict(private=True) for k in self.keys]},
                    "people": self.people,
                }
            )
        )
        log = open(self.workdir / "oidc-provider.log", "ab")  # noqa: SIM115  (the process's)
        self.proc = subprocess.Popen([node, str(PROVIDER), str(config)], stdout=log, stderr=log)
        wait_until(self._up, 30, "the OpenID provider")
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError((self.workdir / "oidc-provider.log").read_text()[-3000:])
        try:
            url = f"{self.issuer}/.well-known/openid-configuration"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def rotate(self, keys: list[RSAKey]) -> None:
        """The provider's keys replaced (the old retired), as after a rotation."""
        self.stop()
        self.keys = keys
        self.start()
