"""Decide what captured data must never leave the process: by name, by value and by type.

Redaction is on by default. A name (local, field, dict key) matches when it, or a word-aligned
suffix of it, equals a sensitive identifier after normalising case, `_` and `-` away: `API_KEY`,
`apiKey`, `x-api-key` and `stripe_api_key` all match `apikey`, while `token_count` and
`shipping` do not. String values match secret-shaped patterns (bearer tokens, JWTs, Luhn-valid
card numbers, cloud keys, credentials in URLs). Objects match globs over `module.QualName`.

The rules live in one immutable `RedactionRules` snapshot; `Redactor.configure` builds a new one
and swaps the reference, so a change takes effect on the next check, without a restart, and a
capture that holds a snapshot sees one consistent configuration.

>>> r = Redactor()
>>> r.is_redacted_name("X-Api-Key"), r.is_redacted_name("token_count")
(True, False)
>>> r.is_redacted_value("Authorization: Bearer 0123456789abcdef0123")
True
>>> _ = r.configure(add_identifiers=["order_id"])
>>> r.is_redacted_name("orderId")
True
"""

from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, List, Optional, Pattern, Tuple

from probebook.errors import SpecError

__all__ = ["CARD_NUMBER_PATTERN", "DEFAULT_IDENTIFIERS", "DEFAULT_PATTERNS", "DEFAULT_TYPES", "RedactionConfig",
           "RedactionRules", "Redactor", "normalize_identifier", "key_name"]


def normalize_identifier(name: str) -> str:
    """Lower-case `name` and drop `_` and `-`: the form identifiers are compared in.

    >>> normalize_identifier("X-Api_Key")
    'xapikey'
    """
    return name.lower().replace("_", "").replace("-", "")


def key_name(k: object) -> Optional[str]:
    """A dict key or a pair's first item as the name it is checked by: a `str` as it is (matching reads
    only its ends), `bytes` read as Latin-1 from their last `_NAME_SCAN` bytes (``b"password"``,
    ``os.environ._data``); None for anything else. Never calls user code.

    >>> key_name(b"DB_PASSWORD"), key_name(3)
    ('DB_PASSWORD', None)
    """
    if type(k) is str:
        return k
    if issubclass(type(k), str):  # a str subclass (an enum member, a hostile key) is read as its text
        return str.__str__(k)[-_NAME_SCAN:]
    if type(k) is bytes or type(k) is bytearray:  # by identity: `in (...)` would call a metaclass __eq__
        return bytes(type(k).__getitem__(k, slice(-_NAME_SCAN, None))).decode("latin-1")  # type: ignore[index]
    return None


DEFAULT_IDENTIFIERS: frozenset = frozenset(
    normalize_identifier(n)
    for n in """
    password passwd pwd passphrase password_hash pass_hash new_password old_password
    secret secrets client_secret app_secret secret_key api_secret consumer_secret webhook_secret
    token access_token refresh_token id_token auth_token bearer_token api_token session_token
    oauth_token csrf_token xsrf_token jwt otp totp mfa_code verification_code recovery_code
    api_key apikey access_key secret_access_key aws_secret_access_key aws_session_token
    private_key privkey signing_key encryption_key master_key hmac_key ssh_key
    authorization proxy_authorization auth credentials credential
    cookie cookies set_cookie session sessionid session_id session_key csrf xsrf
    signature salt connection_string dsn mnemonic seed_phrase
    ssn social_security_number tax_id national_id passport passport_number
    drivers_license card_number cardnumber credit_card credit_card_number cc_number
    pan cvv cvv2 cvc card_verification pin pin_code iban account_number bank_account
    routing_number sort_code date_of_birth dob pass db_pass
    2fa aiohttpsession apisignature appkey applicationkey authtoken ccnumber certificatepin cipher clientid
    clientsecret connectsid creditcard csrftoken databaseurl dburl encryptionkeyid geolocation gpgkey
    ipaddress jti licensekey mysqlpwd nonce oauth passhash passwordb pemfile pgpkey phpsessid pincode pkcs8
    publickey recaptchakey refreshtoken secrettoken securityanswer securitycode securityquestion
    serviceaccountcredentials setcookie signaturekey symfony transactionid twiliotoken usersession voterid
    xapikey xauthtoken xcsrftoken xforwardedfor xrealip xsrftoken
    """.split()  # the second part: Datadog Dynamic Instrumentation's default list (dd-trace-py), all of it
)
# a name that ends with one of these or its plural (``PGPASSWORD``, ``dbpassword``, ``access_tokens``) is sensitive
_STRONG_ENDS = ("password", "passwd", "secret", "apikey", "privatekey", "accesskey", "credential", "token")
# words that only say a name holds its value (``secretValue``, ``api_key_b64``, ``token_str2``): a name is matched
# again without them (up to `_HOLDER_STRIPS` of them or of numbers, from the end)
_HOLDERS = ("value", "val", "str", "string", "text", "data", "raw", "plain", "bytes", "hex", "encoded", "enc", "pem", "json")
_NUMBERED = (["b", "64"], ["base", "64"])  # b64, base64: two words to the word splitter
_HOLDER_STRIPS = 3
_NAME_SCAN = 256  # a name is matched on at most this many characters of its end (and 64 of its start)

# A run of 13 or more digits, optionally grouped by single spaces or dashes. Inside a run, any
# 13-19 digits made of whole groups of 3 or more digits that pass the Luhn check count as a card
# number, so "qty 1 4111 1111 1111 1111" is caught while a bare 20-digit id is not.
CARD_NUMBER_PATTERN = r"[0-9](?:[ .-]?[0-9]){12,}"
# Two patterns that a regex engine without possessive quantifiers (3.9, 3.10) runs in quadratic time on
# text such as "://:" * 1100 (28 ms for 4,000 characters) or "eyJ" * 1500: each is checked by a linear
# function with the same meaning instead (`_url_credentials`, `_jwt`), a credential or token of up to
# `_LOOKBACK` characters before its anchor.
# Case-insensitive patterns have no literal for the regex engine to skip to (150 ns a character): each
# runs only where the lower-cased text holds one of its words.
ASSIGNMENT_PATTERN = r"(?i)(?:password|passwd|pwd|secret|token|api_?key)[\"']?\s*[=:]\s*[\"']?[^\s;&,\"']+"
COOKIE_PATTERN = r"(?i)cookie:\s*\S+"
URL_CREDENTIALS_PATTERN = r"://[^/\s:@]*:[^\s@]+@"
JWT_PATTERN = r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"

# Each starts with a literal so the regex engine can skip ahead; that keeps a check near a
# microsecond for a short string, which matters because every captured string is checked.
DEFAULT_PATTERNS: Tuple[str, ...] = (
    r"earer\s+[A-Za-z0-9._~+/-]{8,}",  # "Bearer <token>"; the B is left out to keep a literal prefix
    r"EARER\s+[A-Za-z0-9._~+/-]{8,}",
    r"asic\s+[A-Za-z0-9+/]{6,}={0,2}",  # "Authorization: Basic dXNlcjpwdw=="
    r"ASIC\s+[A-Za-z0-9+/]{6,}={0,2}",
    ASSIGNMENT_PATTERN,  # libpq, ADO.NET, forms, JSON
    COOKIE_PATTERN,  # a Cookie or Set-Cookie header line
    JWT_PATTERN,  # JWT: header.payload.signature
    r"A[KS]IA[0-9A-Z]{16}",  # AWS access key id
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    URL_CREDENTIALS_PATTERN,  # user:password@ (or :password@, redis://:pw@host) in a URL or DSN
    r"gh[pousr]_[A-Za-z0-9]{36}",  # GitHub tokens
    r"xox[abposr]-[A-Za-z0-9-]{10,}",  # Slack tokens
    r"k_live_[A-Za-z0-9]{16,}",  # Stripe live secret and restricted keys
    CARD_NUMBER_PATTERN,
)

DEFAULT_TYPES: Tuple[str, ...] = ("*.SecretStr", "*.SecretBytes", "*Credentials", "*PrivateKey")

_CARD_SEPARATOR = re.compile(r"[ .-]")
_LUHN_DOUBLED = {str(d): (2 * d) - 9 if d > 4 else 2 * d for d in range(10)}
_MAX_LUHN_CHECKS = 64
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_CACHE_MAX = 4096
_SHORT_TEXT = 48


def _has_card_number(rx: Pattern[str], text: str) -> bool:
    """`CARD_NUMBER_PATTERN` (compiled: `rx`) with the Luhn check on each 13-19 digit stretch of whole groups."""
    checks = 0
    for m in rx.finditer(text):
        groups = _CARD_SEPARATOR.split(m.group())
        for start in range(len(groups)):
            digits, j = "", start
            while j < len(groups) and len(groups[j]) >= 3:
                digits += groups[j]
                j += 1
                if len(digits) > 19:
                    break
                if len(digits) >= 13:
                    checks += 1
                    # a text this full of digit groups is redacted rather than searched on
                    if checks > _MAX_LUHN_CHECKS or _luhn_ok(digits):
                        return True
    return False


_LOOKBACK = 1024
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_-]*")
_PAYLOAD = re.compile(r"\.(?=eyJ[A-Za-z0-9_-]+\.)")


def _url_credentials(text: str) -> bool:
    """`URL_CREDENTIALS_PATTERN` in linear time: from each `@`, the stretch before it without whitespace
    or another `@` must hold a `://` whose user part (to the next `:`) has no `/` and a password after."""
    at = text.find("@")
    while at != -1:
        before = text[max(0, at - _LOOKBACK, text.rfind("@", 0, at) + 1):at]
        if before and not before[-1].isspace():
            tail = before.rsplit(None, 1)[-1]
            i = tail.find("://")
            while i != -1:
                colon = tail.find(":", i + 3)
                if colon == -1:
                    break
                if colon < len(tail) - 1 and tail.find("/", i + 3, colon) == -1:
                    return True
                i = tail.find("://", i + 1)
        at = text.find("@", at + 1)
    return False


def _jwt(text: str) -> bool:
    """`JWT_PATTERN` in linear time: at each `.eyJ`, the run of token characters before it must hold an
    `eyJ` with at least one character after it, and the payload after it must end in a `.`."""
    for m in _PAYLOAD.finditer(text):  # each `.eyJ<token chars>.`, overlapping ones too
        run = _run_before(text, m.start())
        start = run.find("eyJ")
        if start != -1 and start + 3 < len(run):
            return True
    return False


def _run_before(text: str, i: int) -> str:
    """The token characters just before `i`, up to `_LOOKBACK` (a short look first: runs are short)."""
    for width in (64, _LOOKBACK):
        back = text[max(0, i - width):i][::-1]
        size = _TOKEN_RUN.match(back).end()  # type: ignore[union-attr]
        if size < len(back) or width >= i:
            break
    return text[i - size:i]


def _when_words(rx: Pattern[str], words: Tuple[str, ...], text: str) -> bool:
    """`rx.search(text)`, run only where the lower-cased text holds one of `words`."""
    low = text.lower()
    for word in words:
        if word in low:
            return rx.search(text) is not None
    return False


_LINEAR_CHECKS = {URL_CREDENTIALS_PATTERN: _url_credentials, JWT_PATTERN: _jwt,
                  ASSIGNMENT_PATTERN: partial(_when_words, re.compile(ASSIGNMENT_PATTERN),
                                              ("pass", "pwd", "secret", "token", "api")),
                  COOKIE_PATTERN: partial(_when_words, re.compile(COOKIE_PATTERN), ("cookie",))}


def _luhn_ok(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(map(_LUHN_DOUBLED.__getitem__, digits[-2::-2]))
    return total % 10 == 0


@dataclass(frozen=True)
class RedactionConfig:
    """What is redacted. Identifiers are stored normalised; patterns are regex sources.

    >>> RedactionConfig(identifiers=frozenset({"API_KEY"})).identifiers
    frozenset({'apikey'})
    """

    identifiers: frozenset = DEFAULT_IDENTIFIERS
    patterns: Tuple[str, ...] = DEFAULT_PATTERNS
    types: Tuple[str, ...] = DEFAULT_TYPES
    enabled: bool = True

    def __post_init__(self) -> None:
        for key, values in (("identifiers", self.identifiers), ("patterns", self.patterns), ("types", self.types)):
            if isinstance(values, str) or any(type(v) is not str for v in values):
                raise SpecError(f"redaction.{key}: must be a list of strings", field=f"redaction.{key}")
        object.__setattr__(self, "identifiers", frozenset(normalize_identifier(n) for n in self.identifiers))
        object.__setattr__(self, "patterns", tuple(self.patterns))
        object.__setattr__(self, "types", tuple(self.types))
        if type(self.enabled) is not bool:
            raise SpecError("redaction.enabled: must be true or false", field="redaction.enabled")


@dataclass(frozen=True)
class RedactionRules:
    """A compiled, immutable `RedactionConfig`; capture takes one per call for a consistent view."""

    config: RedactionConfig
    _value_checks: Tuple[Callable[[str], bool], ...] = field(init=False, repr=False, compare=False)
    _type_re: Optional[Pattern[str]] = field(init=False, repr=False, compare=False)
    _names: dict = field(init=False, repr=False, compare=False)
    _longest: int = field(init=False, repr=False, compare=False)
    _ends: tuple = field(init=False, repr=False, compare=False)
    _types: dict = field(init=False, repr=False, compare=False)
    # short texts known to hold no secret shape (read directly by hot checks: `work.compared`)
    clean_texts: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks: List[Callable[[str], bool]] = []
        plain: List[str] = []
        for i, source in enumerate(self.config.patterns):
            try:
                compiled = re.compile(source)
            except re.error as exc:
                raise SpecError(
                    f"redaction.patterns[{i}]: not a valid regular expression ({exc}): {source!r}",
                    field="redaction.patterns",
                ) from None
            if source == CARD_NUMBER_PATTERN:
                checks.append(partial(_has_card_number, compiled))
            elif source in _LINEAR_CHECKS:
                checks.append(_LINEAR_CHECKS[source])
            elif compiled.groups or compiled.flags & ~re.UNICODE:
                # groups or global flags change meaning inside an alternation: keep it alone
                checks.append(compiled.search)
            else:
                plain.append(source)
        if plain:
            checks.insert(0, re.compile("|".join(f"(?:{p})" for p in plain)).search)
        type_re = None
        if self.config.types:
            type_re = re.compile("|".join(fnmatch.translate(g) for g in self.config.types))
        object.__setattr__(self, "_value_checks", tuple(checks))
        object.__setattr__(self, "_type_re", type_re)
        object.__setattr__(self, "_names", {})
        object.__setattr__(self, "_longest", max(map(len, self.config.identifiers), default=0) + 8)
        # the strong words that are identifiers of this configuration (a configuration without them has none)
        ends = tuple(w for w in _STRONG_ENDS if w in self.config.identifiers)
        object.__setattr__(self, "_ends", ends + tuple(w + "s" for w in ends))  # passwords, access_tokens too
        object.__setattr__(self, "_types", {})
        object.__setattr__(self, "clean_texts", {})

    def snapshot(self) -> "RedactionRules":
        """Itself: rules never change, so they serve where a `Redactor` would be asked for its rules."""
        return self

    def is_redacted_name(self, name: str) -> bool:
        """True when `name`, or a word-aligned suffix of it, is a sensitive identifier."""
        if type(name) is not str:
            return False
        hit = self._names.get(name)
        if hit is None:
            hit = self._match_name(name)
            if len(name) <= _NAME_SCAN:  # a long name is not kept alive by the cache
                if len(self._names) >= _CACHE_MAX:
                    self._names.clear()
                self._names[name] = hit
        return hit

    def _match_name(self, name: str) -> bool:
        """Linear in the name: only its last `_NAME_SCAN` characters are split into words, and the suffixes
        tried grow from the end until they are longer than any identifier (a 400k-character camelCase key
        once took 165 s here)."""
        if not self.config.enabled:
            return False
        ids = self.config.identifiers
        tail = name[-_NAME_SCAN:]
        norm = normalize_identifier(tail)
        if norm in ids or (norm.endswith(self._ends) and norm != "tokens"):  # a tokenizer's "tokens" is text
            return True
        words = [w.lower() for w in _WORD.findall(tail)]
        for _ in range(_HOLDER_STRIPS + 1):  # then without a holder word: api_key_value, token_str2, secret_b64
            if self._ends_in_identifier(words):
                return True
            drop = 2 if words[-2:] in _NUMBERED else int(bool(words) and (words[-1] in _HOLDERS or words[-1].isdigit()))
            if not drop or len(words) <= drop:
                return False
            words = words[:-drop]
            if "".join(words).endswith(self._ends) and words != ["tokens"]:
                return True
        return False

    def _ends_in_identifier(self, words: List[str]) -> bool:
        """True when the last words, joined, are an identifier (with or without a number after it); the
        suffixes tried grow from the end until they are longer than any identifier."""
        ids, suffix = self.config.identifiers, ""
        for word in reversed(words):
            suffix = word + suffix
            if suffix in ids or suffix.rstrip("0123456789") in ids:
                return True
            if len(suffix) > self._longest:
                break
        return False

    def is_redacted_value(self, text: str) -> bool:
        """True when a secret-shaped pattern occurs anywhere in `text`."""
        short = len(text) <= _SHORT_TEXT
        if short and text in self.clean_texts:
            return False
        if not self.config.enabled:
            return False
        for check in self._value_checks:
            if check(text):
                return True
        if short:
            # short strings recur (dict keys, enum-like values); only clean ones are remembered,
            # so no secret is kept alive by the cache
            if len(self.clean_texts) >= _CACHE_MAX:
                self.clean_texts.clear()
            self.clean_texts[text] = True
        return False

    def is_redacted_type(self, obj_type_name: str) -> bool:
        """True when `module.QualName` matches one of the type globs."""
        hit = self._types.get(obj_type_name)
        if hit is None:
            hit = bool(self.config.enabled and self._type_re is not None and self._type_re.match(obj_type_name))
            if len(self._types) >= _CACHE_MAX:
                self._types.clear()
            self._types[obj_type_name] = hit
        return hit


class Redactor:
    """The process's redaction rules, reconfigurable at run time from any thread.

    >>> r = Redactor(RedactionConfig(identifiers=frozenset({"password"}), patterns=(), types=()))
    >>> r.is_redacted_name("DB_PASSWORD"), r.is_redacted_name("api_key")
    (True, False)
    """

    def __init__(self, config: Optional[RedactionConfig] = None) -> None:
        # the current snapshot; a plain attribute (probes read it on every hit), replaced whole by `configure`
        self.rules = RedactionRules(config if config is not None else RedactionConfig())
        self._lock = threading.Lock()

    @property
    def config(self) -> RedactionConfig:
        return self.rules.config

    def snapshot(self) -> RedactionRules:
        """The current rules; they never change, a later `configure` replaces them."""
        return self.rules

    def is_redacted_name(self, name: str) -> bool:
        return self.rules.is_redacted_name(name)

    def is_redacted_value(self, s: str) -> bool:
        return self.rules.is_redacted_value(s)

    def is_redacted_type(self, obj_type_name: str) -> bool:
        return self.rules.is_redacted_type(obj_type_name)

    def configure(
        self,
        *,
        add_identifiers: Iterable[str] = (),
        remove_identifiers: Iterable[str] = (),
        patterns: Optional[Iterable[str]] = None,
        types: Optional[Iterable[str]] = None,
        enabled: Optional[bool] = None,
    ) -> RedactionConfig:
        """Change the rules now; `patterns`/`types` replace the lists, identifiers are edited.

        Invalid input raises `SpecError` and leaves the current rules in force.

        >>> r = Redactor()
        >>> r.configure(remove_identifiers=["session"]).identifiers >= {"sessionid"}
        True
        >>> r.is_redacted_name("db_session")
        False
        """
        add, remove = _names_arg("add_identifiers", add_identifiers), _names_arg("remove_identifiers", remove_identifiers)
        with self._lock:  # read-modify-write: two concurrent calls must not lose an edit
            old = self.rules.config
            new = RedactionConfig(
                identifiers=(old.identifiers | {normalize_identifier(n) for n in add})
                - {normalize_identifier(n) for n in remove},
                patterns=old.patterns if patterns is None else _names_arg("patterns", patterns),
                types=old.types if types is None else _names_arg("types", types),
                enabled=old.enabled if enabled is None else enabled,
            )
            self.rules = RedactionRules(new)
        return new


def _names_arg(key: str, values: Iterable[str]) -> Tuple[str, ...]:
    if isinstance(values, str):
        raise SpecError(f"redaction.{key}: must be a list of strings, not one string", field=f"redaction.{key}")
    out = tuple(values)
    if any(type(v) is not str for v in out):
        raise SpecError(f"redaction.{key}: must be a list of strings", field=f"redaction.{key}")
    return out
