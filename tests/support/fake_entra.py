"""A fake of Microsoft Entra ID for one application: tenant discovery, the
authority aliases msal asks for, and the client-credentials token endpoint,
with Entra's error shapes (``error``, ``error_description`` with the AADSTS
code, ``error_codes``). ``FakeGraph`` holds one and checks its bearer tokens
against it; msal runs its real code against it through httpx."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import httpx

LOGIN = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def _jwt(claims: dict[str, Any]) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{b64({'typ': 'JWT', 'alg': 'RS256'})}.{b64(claims)}.{base64.urlsafe_b64encode(b'sig').decode().rstrip('=')}"


class FakeEntra:
    """The tenant ``tenant_id`` with one app (``client_id``, ``client_secret``)
    whose tokens carry ``roles`` (none: nothing consented, no roles claim)."""

    def __init__(self, tenant_id: str, client_id: str, client_secret: str, roles: set[str]) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.roles = roles
        self.token_lifetime = 3599
        self.token_error: dict[str, Any] | None = None  # injected Entra error body
        #: issued access tokens: {"exp": epoch seconds, "roles": set}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.token_requests = 0
        self.discovery_requests = 0

    def expire_tokens(self) -> None:
        """Every issued token is now past its lifetime."""
        for t in self.tokens.values():
            t["exp"] = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        m = re.match(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$", path)
        if m and request.method == "GET":
            self.discovery_requests += 1
            tenant = m.group(1)
            if tenant != self.tenant_id:
                return httpx.Response(
                    400,
                    json={
                        "error": "invalid_tenant",
                        "error_description": f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
                        "error_codes": [90002],
                    },
                )
            base = f"{LOGIN}/{tenant}"
            return httpx.Response(
                200,
                json={
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                },
            )
        if path == "/common/discovery/instance" and request.method == "GET":
            # msal asks for authority aliases, e.g. after a token error or when
            # removing cached tokens
            self.discovery_requests += 1
            return httpx.Response(
                200,
                json={
                    "tenant_discovery_endpoint": f"{LOGIN}/common/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": "login.microsoftonline.com",
                            "preferred_cache": "login.windows.net",
                            "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
                        }
                    ],
                },
            )
        m = re.match(r"^/([^/]+)/oauth2/v2\.0/token$", path)
        if not (m and request.method == "POST"):
            return httpx.Response(404, text="not found")
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}

        def fail(status: int, error: str, code: int, text: str) -> httpx.Response:
            return httpx.Response(
                status,
                json={
                    "error": error,
                    "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: {uuid.uuid4()}",
                    "error_codes": [code],
                    "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ"),
                    "error_uri": f"https://login.microsoftonline.com/error?code={code}",
                },
            )

        if form.get("grant_type") != "client_credentials":
            return fail(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return fail(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{self.tenant_id}'.",
            )
        if form.get("client_secret") != self.client_secret:
            return fail(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
        if form.get("scope") != GRAPH_SCOPE:
            return fail(400, "invalid_scope", 1002012, f"The provided value for scope {form.get('scope')} is not valid.")
        if self.token_error:
            return httpx.Response(400, json=self.token_error)
        jti = str(uuid.uuid4())
        claims = {
            "aud": "https://graph.microsoft.com",
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "tid": self.tenant_id,
            "appid": self.client_id,
            "exp": int(time.time()) + self.token_lifetime,
            "jti": jti,
        }
        if self.roles:  # no roles claim at all when nothing is consented
            claims["roles"] = sorted(self.roles)
        token = _jwt(claims)
        self.tokens[token] = {"exp": claims["exp"], "roles": set(self.roles)}
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )
