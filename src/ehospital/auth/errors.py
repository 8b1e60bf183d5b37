"""Errors of sign-in and tokens."""

from ehospital.kit.errors import TooManyRequests, Unauthenticated


class LoginFailed(Unauthenticated):
    code = "invalid_credentials"
    # The failed attempt must be stored even though the request fails.
    keep_writes = True


class LoginThrottled(TooManyRequests):
    code = "too_many_login_attempts"
    keep_writes = True
