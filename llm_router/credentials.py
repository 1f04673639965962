"""Credentials a provider finds itself rather than as one key: a Google service-account key file
named by an environment variable, AWS access keys from the environment or a shared profile.

Both `validate` (a warning) and the engine (an error on the first call) use these, so the two say
the same thing. The optional libraries (google-auth, botocore) are imported only when a provider
that needs them is used. No message ever holds a key, only the variable or file it came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_FIELDS = ("client_email", "private_key", "token_uri")


class CredentialError(ValueError):
    """A credential is missing or unusable; the message says which variable or file, and how to fix it."""


def service_account_info(variable: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The parsed service-account key file that `variable` names, checked for the fields a token needs."""
    path = env.get(variable)
    if not path:
        raise CredentialError(f"{variable} is not set: set it to the path of a service-account JSON key file")
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialError(f"{variable} names {path!r}, which cannot be read ({reason})") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise CredentialError(f"{variable} names {path!r}, which is not JSON (a service-account key file is)") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        raise CredentialError(f"{variable} names {path!r}, which is not a service-account key (its type is {kind!r}; "
                              "create a JSON key for a service account)")
    missing = [k for k in SERVICE_ACCOUNT_FIELDS if not isinstance(info.get(k), str) or not info[k]]
    if missing:
        raise CredentialError(f"{variable} names {path!r}, a service-account key without {', '.join(missing)}")
    return info


def service_account_signer(variable: str, info: Mapping[str, Any]) -> Any:
    """google-auth's RSA signer for the key (raises CredentialError when the extra is missing or the key is bad)."""
    try:
        from google.auth import crypt
    except ImportError:
        raise CredentialError("a Google service account needs google-auth: pip install 'llm-router[google]'") from None
    try:
        return crypt.RSASigner.from_service_account_info(info)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, IndexError):
        raise CredentialError(f"the private_key in the file {variable} names is not a valid PEM RSA key") from None


@dataclass(frozen=True, slots=True)
class AwsKeys:
    access_key: str
    secret_key: str
    token: str | None = None

    def __repr__(self) -> str:
        return "AwsKeys(***)"


def _aws_files(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(profile, shared credentials file, config file), as the AWS SDKs find them."""
    profile = env.get("AWS_PROFILE") or "default"
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    credentials_file = env.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / ".aws" / "credentials")
    config_file = env.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config")
    return profile, os.path.expanduser(credentials_file), os.path.expanduser(config_file)


def _no_aws_keys(profile: str, credentials_file: str) -> CredentialError:
    return CredentialError(f"no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile "
                           f"{profile!r} in {credentials_file} (AWS_PROFILE picks another)")


def check_aws_keys(env: Mapping[str, str]) -> None:
    """Raise CredentialError when no AWS keys can be found; a quick look (no botocore) for `validate`:
    the variables, or the profile's section in the shared files."""
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return
    profile, credentials_file, config_file = _aws_files(env)
    sections = {credentials_file: f"[{profile}]", config_file: "[default]" if profile == "default" else f"[profile {profile}]"}
    for path, section in sections.items():
        try:
            if section in Path(path).read_text(encoding="utf-8", errors="replace"):
                return
        except OSError:
            continue
    raise _no_aws_keys(profile, credentials_file)


def aws_keys(env: Mapping[str, str]) -> AwsKeys:
    """Keys from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else from the profile
    AWS_PROFILE (default `default`) in the shared credentials and config files. Never the instance
    metadata service: the router reaches only declared hosts."""
    try:
        from botocore.credentials import ConfigProvider, EnvProvider, SharedCredentialProvider
        from botocore.exceptions import BotoCoreError
    except ImportError:
        raise CredentialError("AWS Signature Version 4 needs botocore: pip install 'llm-router[aws]'") from None
    profile, credentials_file, config_file = _aws_files(env)
    providers = (EnvProvider(environ=dict(env)), SharedCredentialProvider(credentials_file, profile),
                 ConfigProvider(config_file, profile))
    for provider in providers:
        try:
            found = provider.load()
        except BotoCoreError as exc:  # a malformed file, a key without its secret
            raise CredentialError(f"AWS credentials ({provider.METHOD}) are unusable: {type(exc).__name__}") from None
        if found is not None:
            frozen = found.get_frozen_credentials()
            if frozen.access_key and frozen.secret_key:
                return AwsKeys(frozen.access_key, frozen.secret_key, frozen.token or None)
    raise _no_aws_keys(profile, credentials_file)
