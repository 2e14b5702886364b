"""One place that makes AWS clients: the standard credential chain, standard retries.

``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``) is honoured by
boto3 itself, so an emulator needs no special case here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from typing import TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from quetzal_deploy.errors import AwsError
from quetzal_deploy.runtime.transfer import boto_session
from quetzal_deploy.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)
RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)
# What botocore raises for a call: the service's answer, or a failure before or around it.
AWS_ERRORS = (BotoCoreError, ClientError)
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
                           "UnrecognizedClientException", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                          "AuthorizationError", "Forbidden", "403"})
THROTTLED_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
                             "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
                             "SlowDown", "ProvisionedThroughputExceededException"})
MISSING_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404", "ResourceNotFoundException",
                           "RepositoryNotFoundException", "NoSuchEntity", "StateMachineDoesNotExist",
                           "ExecutionDoesNotExist", "FunctionNotFound"})
MISSING_OBJECT = frozenset({"NoSuchKey", "404"})  # GetObject's answer, HeadObject's
# S3's answers to a conditional write (If-Match / If-None-Match) whose condition no longer holds.
CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


def error_code(ex: BaseException | None) -> str:
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
        return explain_answer(error_code(ex), ex.response.get("Error", {}).get("Message", str(ex)), profile)
    if isinstance(ex, (ConnectionError, HTTPClientError)):
        return AwsError(f"AWS could not be reached: {ex}. Check the network, AWS_REGION in .env and, "
                        "for an emulator, AWS_ENDPOINT_URL.")
    return AwsError(f"AWS could not be reached: {ex}")


def explain_answer(code: str, message: str, profile: str | None) -> AwsError:
    """An error the service answered (``code``, ``message``) as an AwsError with its fix."""
    if code in EXPIRED_CODES:
        return AwsError(f"AWS rejected your credentials ({code}). {credentials_hint(profile)}")
    if code in DENIED_CODES:
        return AwsError(f"AWS denied access: {message}. Use a profile allowed to manage "
                        "this model's resources.")
    if code in THROTTLED_CODES:
        return AwsError(f"AWS is throttling this account's requests ({code}: {message}), even after "
                        "retries: wait a minute and run the command again, or run fewer at once.")
    if code in MISSING_CODES:
        return AwsError(f"AWS has no such resource ({code}: {message}): run `invoke infra` to create "
                        "the model's resources, or check MODEL_NAME and AWS_REGION in .env.")
    return AwsError(f"AWS error {code}: {message}")


@contextmanager
def translated(profile: str | None = None, known: Mapping[str, str] | None = None) -> Iterator[None]:
    """botocore errors raised inside become an AwsError ``from`` them: an error code in ``known``
    with the caller's own message (it names the resource), any other as :func:`explain` says."""
    try:
        yield
    except AWS_ERRORS as ex:
        if known and error_code(ex) in known:
            raise AwsError(known[error_code(ex)]) from ex
        raise explain(ex, profile) from ex


def unless_absent(action: Callable[[], T], absent: Collection[str], default: T, profile: str | None = None,
                  known: Mapping[str, str] | None = None) -> T:
    """``action()``; ``default`` when AWS answers one of the ``absent`` codes (e.g. ``NoSuchKey``),
    other errors :func:`translated`."""
    with translated(profile, known):
        try:
            return action()
        except ClientError as ex:
            if error_code(ex) in absent:
                return default
            raise


def s3_object(s3, bucket: str, key: str, profile: str | None = None,
              known: Mapping[str, str] | None = None) -> tuple[bytes, str] | None:
    """An S3 object's bytes and ETag; None when there is no such object, other errors translated."""

    def fetch() -> tuple[bytes, str]:
        stored = s3.get_object(Bucket=bucket, Key=key)
        return stored["Body"].read(), stored["ETag"]

    return unless_absent(fetch, MISSING_OBJECT, None, profile, known)


class Aws:
    """Clients for one model's account and region."""

    def __init__(self, settings: Settings, session: boto3.Session | None = None):
        self.settings = settings
        self._session = session

    @cached_property
    def session(self) -> boto3.Session:
        if self._session is not None:
            return self._session
        log.debug("AWS session: profile %s, region %s, endpoint %s", self.settings.profile or "(the chain's)",
                  self.settings.region, os.environ.get("AWS_ENDPOINT_URL") or "(AWS's)")
        with translated():
            return boto_session(profile_name=self.settings.profile, region_name=self.settings.region)

    def client(self, service: str):
        """A client with standard retries, for this model's region."""
        log.debug("AWS client: %s", service)
        return self.session.client(service, region_name=self.settings.region, config=RETRIES)

    @cached_property
    def account_id(self) -> str:
        """The caller's account id; fails with a fix hint when credentials are missing."""
        with translated(self.settings.profile):
            return self.client("sts").get_caller_identity()["Account"]
