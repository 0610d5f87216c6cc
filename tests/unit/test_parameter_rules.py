"""Parameter Store's input rules (issue 6): every rule accepted and refused, one table each."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from control_plane.errors import InvalidRequest, ParameterMaxVersionLimitExceeded
from control_plane.rules import parameters as rules
from control_plane.rules.parameters import (
    Expiration,
    ExpirationNotification,
    NoChangeNotification,
    Selector,
)

UTC = dt.UTC

# Names


@pytest.mark.parametrize(
    "name",
    [
        "db-url",
        "/app/prod/db-url",
        "/app/prod/db_pass.v2",
        "A-Z.a_z-0.9",
        "/" + "/".join(["l"] * 15),  # 15 levels
        "x" * 1011,
        "/" + "x" * 1010,
        "/my-aws-key",  # 'aws' only refused at the start
        "/app/aws/x",  # ... of the first segment
        "awe",
        "/sm/x",
        "DB-URL",  # case-sensitive: distinct from db-url, both valid
    ],
)
def test_name_accepted(name: str) -> None:
    assert rules.check_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("x" * 1012, "1012 characters long; at most 1011"),
        ("/" + "x" * 1011, "1012 characters long"),
        ("my key", "may not contain spaces"),
        ("/app/my key", "may not contain spaces"),
        ("db:url", "contains ':'"),
        ("db*", "contains '*'"),
        ("/app/é", "contains 'é'"),
        ("db\nurl", "contains '\\n'"),
        ("app/prod/db", "must start with '/'"),
        ("/app/prod/", "may not end with '/'"),
        ("/", "may not end with '/'"),
        ("/app//db", "empty path segment"),
        ("/" + "/".join(["l"] * 16), "16 levels; at most 15"),
        # The issue's examples, and the rule in any case:
        ("awsKey", "may not begin with 'aws' or 'ssm'"),
        ("/aws/x", "may not begin with 'aws' or 'ssm'"),
        ("/SSM-x", "may not begin with 'aws' or 'ssm'"),
        ("ssm", "may not begin with 'aws' or 'ssm'"),
        ("AWS.x", "may not begin with 'aws' or 'ssm'"),
        ("/sSm/a/b", "may not begin with 'aws' or 'ssm'"),
        ("/awsome/a", "may not begin with 'aws' or 'ssm'"),
    ],
)
def test_name_refused(name: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        rules.check_name(name)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_long_name_is_not_echoed_in_full() -> None:
    with pytest.raises(InvalidRequest) as info:
        rules.check_name("x" * 5000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("path", "expected"), [("/", "/"), ("/app", "/app"), ("/app/prod/", "/app/prod")]
)
def test_path_accepted(path: str, expected: str) -> None:
    assert rules.check_path(path) == expected


@pytest.mark.parametrize("path", ["app", "", "/app//x", "/aws", "/a b"])
def test_path_refused(path: str) -> None:
    with pytest.raises(InvalidRequest):
        rules.check_path(path)


# Type, tier, data type, description


@pytest.mark.parametrize("value", ["String", "StringList", "SecureString"])
def test_type_accepted(value: str) -> None:
    assert rules.check_type(value) == value


@pytest.mark.parametrize("value", ["string", "Secure", "", None, "SecureString "])
def test_type_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="is not one of String, StringList, SecureString"):
        rules.check_type(value)


@pytest.mark.parametrize("value", ["Standard", "Advanced"])
def test_tier_accepted(value: str) -> None:
    assert rules.check_tier(value) == value


@pytest.mark.parametrize("value", ["standard", "Intelligent-Tiering", "", 1])
def test_tier_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="is not one of Standard, Advanced"):
        rules.check_tier(value)


def test_data_type() -> None:
    assert rules.check_data_type("text") == "text"
    with pytest.raises(InvalidRequest, match="'aws:ec2:image' is not supported by Corral"):
        rules.check_data_type("aws:ec2:image")
    with pytest.raises(InvalidRequest, match="'binary' is not valid; use 'text'"):
        rules.check_data_type("binary")


def test_description() -> None:
    assert rules.check_description("d" * 1024) == "d" * 1024
    with pytest.raises(InvalidRequest, match="at most 1024"):
        rules.check_description("d" * 1025)


# Values

SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(
    ("value", "type_", "tier"),
    [
        ("v", "String", "Standard"),
        ("x" * 4096, "String", "Standard"),
        ("é" * 2048, "SecureString", "Standard"),  # 4096 bytes
        ("x" * 8192, "String", "Advanced"),
        ("a,b,c", "StringList", "Standard"),
        ("single", "StringList", "Standard"),
        ("a, b", "StringList", "Standard"),  # items kept verbatim
        ("line 1\nline 2", "String", "Standard"),
        ("{not a reference}", "String", "Standard"),
        ("a,,b", "String", "Standard"),  # only StringList items are checked
    ],
)
def test_value_accepted(value: str, type_: rules.ParameterType, tier: rules.Tier) -> None:
    assert rules.check_value(value, type_, tier) == value


@pytest.mark.parametrize(
    ("value", "type_", "tier", "message"),
    [
        ("", "String", "Standard", "empty"),
        (None, "String", "Standard", "empty"),
        ("x" * 4097, "String", "Standard", "4097 bytes; the Standard tier allows at most 4096"),
        ("é" * 2049, "String", "Standard", "4098 bytes"),
        ("x" * 8193, "String", "Advanced", "8193 bytes; the Advanced tier allows at most 8192"),
        ("{{ssm:/x}}", "String", "Standard", "may not contain '{{' or '}}'"),
        ("a{{b", "String", "Standard", "may not contain"),
        ("a}}b", "SecureString", "Standard", "may not contain"),
        ("a,,b", "StringList", "Standard", "empty item"),
        ("a,", "StringList", "Standard", "empty item"),
        (",a", "StringList", "Standard", "empty item"),
        ("x\ud800", "String", "Standard", "not valid UTF-8"),
    ],
)
def test_value_refused(
    value: object, type_: rules.ParameterType, tier: rules.Tier, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        rules.check_value(value, type_, tier)


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        (SECRET + "{{", "SecureString"),
        (SECRET * 400, "SecureString"),
        (SECRET + ",,x", "StringList"),
    ],
)
def test_value_errors_never_echo_the_value(value: str, type_: rules.ParameterType) -> None:
    with pytest.raises(InvalidRequest) as info:
        rules.check_value(value, type_, "Standard")
    assert SECRET not in str(info.value)


def test_string_list_split() -> None:
    assert rules.split_string_list("a,b ,c") == ["a", "b ", "c"]


# Allowed patterns


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        (r"^\d+$", "123", True),
        (r"\d+", "123", True),
        (r"\d+", "123abc", False),  # the whole value must match
        (r"\d+", "abc123", False),
        (r"[a-z]+", "abc", True),
        (r"[a-z]+", "ABC", False),
        (r"a|ab", "ab", True),  # fullmatch tries the alternatives
    ],
)
def test_value_matches(pattern: str, value: str, matches: bool) -> None:
    assert rules.value_matches(pattern, value) is matches
    assert rules.value_matches(rules.check_allowed_pattern(pattern), value) is matches


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("[a-z", "'[a-z' is not a valid regular expression: unterminated character set"),
        ("(", "missing ), unterminated subpattern"),
        ("*", "nothing to repeat at position 0"),
        ("", "allowed pattern is empty"),
        ("a" * 1025, "1025 characters long; at most 1024"),
        (None, "allowed pattern is empty"),
    ],
)
def test_allowed_pattern_refused(pattern: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        rules.check_allowed_pattern(pattern)


def test_allowed_pattern_of_the_maximum_length() -> None:
    assert rules.check_allowed_pattern("a" * 1024).pattern == "a" * 1024


def test_a_value_failing_its_pattern_is_refused_without_echo() -> None:
    assert rules.check_value_matches(r"[0-9]+", "42") == "42"
    with pytest.raises(
        InvalidRequest, match=r"does not match the allowed pattern '\[0-9\]\+'"
    ) as info:
        rules.check_value_matches(r"[0-9]+", SECRET)
    assert SECRET not in str(info.value)


# Labels


@pytest.mark.parametrize(
    "label", ["prod", "Prod-2024_v1.0", "x" * 100, "a1", "_x", ".x", "-x", "myaws", "Ssn"]
)
def test_label_accepted(label: str) -> None:
    assert rules.check_label(label) == label


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("", "empty"),
        ("x" * 101, "101 characters long; at most 100"),
        ("a b", "may contain only letters, digits and . - _"),
        ("a/b", "may contain only"),
        ("a:b", "may contain only"),
        ("é", "may contain only"),
        ("1prod", "may not begin with a digit"),
        ("42", "may not begin with a digit"),
        ("awsprod", "may not begin with 'aws' or 'ssm'"),
        ("AWS", "may not begin with 'aws' or 'ssm'"),
        ("ssm-x", "may not begin with 'aws' or 'ssm'"),
        ("SsM", "may not begin with 'aws' or 'ssm'"),
    ],
)
def test_label_refused(label: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        rules.check_label(label)


@pytest.mark.parametrize(
    ("existing", "new", "expected"),
    [
        ([], ["a"], ["a"]),
        (["a"], ["b", "b"], ["a", "b"]),
        ([f"l{i}" for i in range(10)], ["l3"], [f"l{i}" for i in range(10)]),  # already there
        ([f"l{i}" for i in range(9)], ["x"], [*(f"l{i}" for i in range(9)), "x"]),
    ],
)
def test_label_count_accepted(existing: list[str], new: list[str], expected: list[str]) -> None:
    assert rules.check_label_count(existing, new) == expected


@pytest.mark.parametrize(
    ("existing", "new"),
    [([f"l{i}" for i in range(10)], ["x"]), ([], [f"l{i}" for i in range(11)])],
)
def test_label_count_refused(existing: list[str], new: list[str]) -> None:
    with pytest.raises(InvalidRequest, match="at most 10 labels; this would give it 11"):
        rules.check_label_count(existing, new)


# Versions


def _versions(
    count: int, first: int = 1, labels: dict[int, list[str]] | None = None
) -> list[tuple[int, list[str]]]:
    labels = labels or {}
    return [(v, labels.get(v, [])) for v in range(first, first + count)]


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        ([], None),
        (_versions(99), None),
        (_versions(100), 1),
        (_versions(100, first=57), 57),
        (list(reversed(_versions(100, first=3))), 3),
        (_versions(100, labels={2: ["prod"]}), 1),  # only the oldest's labels matter
    ],
)
def test_version_to_drop(versions: list[tuple[int, list[str]]], expected: int | None) -> None:
    assert rules.version_to_drop("/app/x", versions) == expected


def test_the_oldest_version_with_labels_blocks_the_put() -> None:
    versions = _versions(100, labels={1: ["prod", "blue"]})
    with pytest.raises(ParameterMaxVersionLimitExceeded) as info:
        rules.version_to_drop("/app/x", versions)
    assert str(info.value).startswith(
        "parameter /app/x has 100 versions and the oldest (v1) carries labels [blue, prod]: "
        "remove them first"
    )
    assert info.value.status == 409


# Selectors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/app/db", Selector("/app/db", None, None)),
        ("/app/db:3", Selector("/app/db", 3, None)),
        ("/app/db:0012", Selector("/app/db", 12, None)),
        ("/app/db:prod", Selector("/app/db", None, "prod")),
        ("db:Blue-1", Selector("db", None, "Blue-1")),
    ],
)
def test_selector_accepted(text: str, expected: Selector) -> None:
    assert rules.parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/app/db:", "nothing after ':'"),
        ("/app/db:0", "versions start at 1"),
        ("/app/db:3x", "may not begin with a digit"),
        ("/app/db:aws-x", "may not begin with 'aws' or 'ssm'"),
        ("/app/db:1:2", "may contain only letters"),
        ("/aws/db:3", "may not begin with 'aws' or 'ssm'"),
        (":3", "parameter name is empty"),
        ("/app/db:٣", "may contain only letters"),  # a non-ASCII digit is no version
    ],
)
def test_selector_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        rules.parse_selector(text)


# Parameter policies

ISSUE_POLICIES = (
    '[{"Type":"Expiration","Version":"1.0","Attributes":{"Timestamp":"2026-12-31T00:00:00.000Z"}},'
    ' {"Type":"ExpirationNotification","Version":"1.0","Attributes":{"Before":"15","Unit":"Days"}},'
    ' {"Type":"NoChangeNotification","Version":"1.0","Attributes":{"After":"20","Unit":"Days"}}]'
)
END_2026 = dt.datetime(2026, 12, 31, tzinfo=UTC)


def _policy(kind: str, **attrs: object) -> dict[str, object]:
    return {"Type": kind, "Version": "1.0", "Attributes": attrs}


def test_the_issue_policies_parse() -> None:
    assert rules.parse_policies(ISSUE_POLICIES, "Advanced") == [
        Expiration(END_2026),
        ExpirationNotification(15, "Days"),
        NoChangeNotification(20, "Days"),
    ]


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([], []),
        ([_policy("Expiration", Timestamp="2026-12-31T01:00:00+01:00")], [Expiration(END_2026)]),
        (
            [_policy("NoChangeNotification", After="6", Unit="Hours")],
            [NoChangeNotification(6, "Hours")],
        ),
        (
            [_policy("NoChangeNotification", After=6, Unit="Hours")],
            [NoChangeNotification(6, "Hours")],
        ),
        (
            [
                _policy("ExpirationNotification", Before="1", Unit="Hours"),
                _policy("Expiration", Timestamp="2026-12-31T00:00:00Z"),
            ],
            [ExpirationNotification(1, "Hours"), Expiration(END_2026)],
        ),
    ],
)
def test_policies_accepted(policies: list[object], expected: list[rules.Policy]) -> None:
    assert rules.parse_policies(json.dumps(policies), "Advanced") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
        ("[" * 5000, "longer than 4096 characters"),
        ("[" * 3000, "not valid JSON"),
        ('{"Type":"Expiration"}', "must be a JSON list"),
        ("[1]", "policy 1 is not a JSON object"),
        (json.dumps([_policy("Deletion")]), "policy 1 has unknown Type 'Deletion'"),
        (json.dumps([{"Type": "Expiration", "Version": "1.0"}]), "must have an Attributes object"),
        (
            json.dumps([{**_policy("Expiration", Timestamp="2026-01-01T00:00:00Z"), "X": 1}]),
            "policy 1 has unknown field 'X'",
        ),
        (
            json.dumps(
                [{**_policy("Expiration", Timestamp="2026-01-01T00:00:00Z"), "Version": "2.0"}]
            ),
            'must have "Version": "1.0"',
        ),
        (
            json.dumps([_policy("Expiration", Timestamp="tomorrow")]),
            "Timestamp must be an ISO 8601",
        ),
        (json.dumps([_policy("Expiration", Timestamp="2026-12-31T00:00:00")]), "with a zone"),
        (json.dumps([_policy("Expiration", Timestamp=1767139200)]), "Timestamp must be"),
        (json.dumps([_policy("Expiration")]), "Timestamp must be"),
        (
            json.dumps([_policy("Expiration", Timestamp="2026-01-01T00:00:00Z", Extra="1")]),
            "unknown attribute 'Extra'",
        ),
        (
            json.dumps([_policy("NoChangeNotification", After="20", Unit="Weeks")]),
            'Unit must be "Days" or "Hours"',
        ),
        (json.dumps([_policy("NoChangeNotification", After="20", Unit="days")]), "Unit must be"),
        (
            json.dumps([_policy("NoChangeNotification", After="0", Unit="Days")]),
            "After must be a whole number of days from 1 to 36500",
        ),
        (
            json.dumps([_policy("NoChangeNotification", After="-3", Unit="Days")]),
            "After must be a whole number",
        ),
        (
            json.dumps([_policy("NoChangeNotification", After="1.5", Unit="Days")]),
            "After must be a whole number",
        ),
        (
            json.dumps([_policy("NoChangeNotification", After=True, Unit="Days")]),
            "After must be a whole number",
        ),
        (
            json.dumps([_policy("NoChangeNotification", After="876001", Unit="Hours")]),
            "hours from 1 to 876000",
        ),
        (
            json.dumps([_policy("NoChangeNotification", Unit="Days")]),
            "After must be a whole number",
        ),
        (
            json.dumps([_policy("NoChangeNotification", Before="3", Unit="Days")]),
            "unknown attribute 'Before'",
        ),
        (
            json.dumps([_policy("ExpirationNotification", Before="3", Unit="Days")]),
            "an ExpirationNotification policy needs an Expiration policy",
        ),
        (
            json.dumps([_policy("Expiration", Timestamp="2026-01-01T00:00:00Z")] * 2),
            "more than one Expiration policy",
        ),
        (
            json.dumps(
                [
                    _policy("NoChangeNotification", After="1", Unit="Days"),
                    _policy("NoChangeNotification", After="2", Unit="Hours"),
                ]
            ),
            "more than one NoChangeNotification policy",
        ),
    ],
)
def test_policies_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        rules.parse_policies(text, "Advanced")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_policies_need_the_advanced_tier() -> None:
    with pytest.raises(InvalidRequest, match=r"need the Advanced tier \(--tier Advanced\)"):
        rules.parse_policies(ISSUE_POLICIES, "Standard")
    assert rules.parse_policies("[]", "Standard") == []


def test_an_expiration_in_the_past_is_refused_when_now_is_given() -> None:
    before = dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert rules.parse_policies(ISSUE_POLICIES, "Advanced", now=before)[0] == Expiration(END_2026)
    with pytest.raises(InvalidRequest, match="Timestamp is not in the future"):
        rules.parse_policies(ISSUE_POLICIES, "Advanced", now=END_2026.timestamp())


def test_stored_policies_parse_from_their_decoded_form() -> None:
    stored = json.loads(ISSUE_POLICIES)
    assert rules.parse_policies(stored, "Advanced") == rules.parse_policies(
        ISSUE_POLICIES, "Advanced"
    )
    assert rules.parse_policies(None, "Standard") == []
    with pytest.raises(InvalidRequest, match="must be a JSON list"):
        rules.parse_policies(json.dumps(stored[0]), "Advanced")


def test_policies_round_trip_through_aws_json() -> None:
    policies = rules.parse_policies(ISSUE_POLICIES, "Advanced")
    assert rules.policies_json(policies) == json.loads(ISSUE_POLICIES)
    assert rules.parse_policies(json.dumps(rules.policies_json(policies)), "Advanced") == policies


def _at(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


def test_next_fire_times() -> None:
    policies = rules.parse_policies(ISSUE_POLICIES, "Advanced")
    assert rules.next_fire_times(policies, _at(2026, 6, 1, 12)) == [
        ("parameter.no_change_notification", _at(2026, 6, 21, 12)),
        ("parameter.expiration_notification", _at(2026, 12, 16)),
        ("parameter.expired", _at(2026, 12, 31)),
    ]
    assert rules.EXPIRED == "parameter.expired"


def test_next_fire_times_in_hours_and_sorted() -> None:
    policies: list[rules.Policy] = [
        NoChangeNotification(48, "Hours"),
        Expiration(dt.datetime(2026, 1, 2, tzinfo=UTC)),
        ExpirationNotification(36, "Hours"),
    ]
    assert rules.next_fire_times(policies, _at(2026, 1, 1)) == [
        ("parameter.expiration_notification", _at(2025, 12, 31, 12)),
        ("parameter.expired", _at(2026, 1, 2)),
        ("parameter.no_change_notification", _at(2026, 1, 3)),
    ]
    assert rules.next_fire_times([], _at(2026, 1, 1)) == []


def test_check_value_checks_the_tier_too() -> None:
    with pytest.raises(InvalidRequest, match="tier 'Premium' is not one of"):
        rules.check_value("v", "String", "Premium")
