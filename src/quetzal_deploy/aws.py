"""One place that makes AWS clients: the standard credential chain, standard retries.

``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``) is honoured by
boto3 itself, so an emulator needs no special case here.
"""

from __future__ import annotations

from functools import cached_property

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from quetzal_deploy.errors import AwsError
from quetzal_deploy.settings import Settings

RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
                 "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


# S3's answers to a conditional write (If-Match / If-None-Match) whose condition no longer holds.
CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def error_code(ex: BaseException) -> str:
    """The AWS error code of a ``ClientError`` (e.g. ``NoSuchBucket``), else ``""``."""
    return ex.response.get("Error", {}).get("Code", "") if isinstance(ex, ClientError) else ""


def credentials_hint(profile: str | None) -> str:
    login = f"aws sso login --profile {profile}" if profile else "aws sso login --profile <name>"
    return (
        "Set AWS_PROFILE (or --profile) to a configured profile, run `" + login + "`, "
        "or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; see `aws configure`."
    )


def explain(ex: Exception, profile: str | None = None) -> AwsError:
    """Turn a botocore error into an AwsError that says how to fix it."""
    if isinstance(ex, ProfileNotFound):
        return AwsError(f"AWS profile not found: {ex}. {credentials_hint(None)}")
    if isinstance(ex, (NoCredentialsError, PartialCredentialsError)):
        return AwsError(f"No AWS credentials found. {credentials_hint(profile)}")
    if isinstance(ex, (SSOTokenLoadError, UnauthorizedSSOTokenError, TokenRetrievalError)):
        return AwsError(f"Your AWS SSO session has expired. {credentials_hint(profile)}")
    if isinstance(ex, NoRegionError):
        return AwsError("No AWS region: set AWS_REGION in .env or pass --region.")
    if isinstance(ex, ClientError):
        code = error_code(ex)
        message = ex.response.get("Error", {}).get("Message", str(ex))
        if code in EXPIRED_CODES:
            return AwsError(f"AWS rejected your credentials ({code}). {credentials_hint(profile)}")
        if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
            return AwsError(f"AWS denied access: {message}. Use a profile allowed to manage "
                            "this model's resources.")
        return AwsError(f"AWS error {code}: {message}")
    return AwsError(f"AWS could not be reached: {ex}")


class Aws:
    """Clients for one model's account and region."""

    def __init__(self, settings: Settings, session: boto3.Session | None = None):
        self.settings = settings
        self._session = session

    @cached_property
    def session(self) -> boto3.Session:
        if self._session is not None:
            return self._session
        try:
            return boto3.Session(profile_name=self.settings.profile, region_name=self.settings.region)
        except ProfileNotFound as ex:
            raise explain(ex) from ex

    def client(self, service: str):
        """A client with standard retries, for this model's region."""
        return self.session.client(service, region_name=self.settings.region, config=RETRIES)

    @cached_property
    def account_id(self) -> str:
        """The caller's account id; fails with a fix hint when credentials are missing."""
        try:
            return self.client("sts").get_caller_identity()["Account"]
        except Exception as ex:  # botocore raises many unrelated types for the same cause
            raise explain(ex, self.settings.profile) from ex
