"""Tag rules (AWS's): key 1-128, value 0-256, at most 50, no aws: prefix, a limited alphabet."""

from __future__ import annotations

import pytest

from control_plane.errors import InvalidRequest
from control_plane.services.validation import MAX_TAGS, check_tag_key, check_tags, check_text


def test_key_length_limits() -> None:
    assert check_tags({"k": "v"}) == {"k": "v"}
    assert check_tags({"k" * 128: "v"}) == {"k" * 128: "v"}
    with pytest.raises(InvalidRequest, match="must be 1 to 128 characters"):
        check_tags({"": "v"})
    with pytest.raises(InvalidRequest, match="must be 1 to 128 characters"):
        check_tags({"k" * 129: "v"})


def test_value_length_limits() -> None:
    assert check_tags({"empty": ""}) == {"empty": ""}
    assert check_tags({"long": "v" * 256}) == {"long": "v" * 256}
    with pytest.raises(InvalidRequest, match="at most 256 characters"):
        check_tags({"long": "v" * 257})


def test_at_most_50_tags() -> None:
    fifty = {f"k{i}": "v" for i in range(MAX_TAGS)}
    assert MAX_TAGS == 50
    assert check_tags(fifty) == fifty
    with pytest.raises(InvalidRequest, match="at most 50 tags"):
        check_tags({**fifty, "one-more": "v"})


def test_existing_tags_count_towards_the_limit() -> None:
    assert len(check_tags({f"k{i}": "v" for i in range(10)}, existing=40)) == 10
    with pytest.raises(InvalidRequest, match="at most 50 tags"):
        check_tags({f"k{i}": "v" for i in range(10)}, existing=41)


@pytest.mark.parametrize("key", ["aws:name", "AWS:name", "Aws:x", "aWs:", "aws:"])
def test_aws_prefix_is_reserved_in_any_case(key: str) -> None:
    with pytest.raises(InvalidRequest, match="may not start with 'aws:'"):
        check_tag_key(key)
    with pytest.raises(InvalidRequest, match="may not start with 'aws:'"):
        check_tags({key: "v"})


@pytest.mark.parametrize("key", ["aws", "awsx:y", "my-aws:x", "aws-team", "x:aws:y"])
def test_aws_elsewhere_in_the_key_is_fine(key: str) -> None:
    assert check_tag_key(key) == key


def test_allowed_characters() -> None:
    key = "Env_1 .:/=+-@"
    value = "web server/eu-west-1:a=b+c@d_e.f"
    assert check_tags({key: value}) == {key: value}
    assert check_tags({"équipe": "données"}) == {"équipe": "données"}  # Unicode letters


@pytest.mark.parametrize("bad", ["a*b", "a#b", "a;b", "a<b>", 'a"b', "a,b", "a$b", "a\\b", "a|b"])
def test_other_characters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="may contain only letters, digits, spaces"):
        check_tags({bad: "v"})
    with pytest.raises(InvalidRequest, match="may contain only letters, digits, spaces"):
        check_tags({"k": bad})


@pytest.mark.parametrize("bad", ["a\nb", "a\tb", "a\rb", "trailing\n", "a\x00b", "a\x0bb"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="may contain only"):
        check_tags({bad: "v"})
    with pytest.raises(InvalidRequest, match="may contain only"):
        check_tags({"k": bad})


@pytest.mark.parametrize("value", [5, None, True, ["v"]])
def test_non_string_values_are_refused(value: object) -> None:
    with pytest.raises(InvalidRequest, match="must be a string"):
        check_tags({"k": value})


@pytest.mark.parametrize("key", [5, None, b"k"])
def test_non_string_keys_are_refused(key: object) -> None:
    with pytest.raises(InvalidRequest, match="must be 1 to 128 characters"):
        check_tag_key(key)


def test_check_text() -> None:
    assert check_text("name", "web 1", 256) == "web 1"
    with pytest.raises(InvalidRequest, match="name must be a string of at most 4"):
        check_text("name", "12345", 4)
    with pytest.raises(InvalidRequest, match="may not contain control characters"):
        check_text("name", "a\nb", 256)
    with pytest.raises(InvalidRequest, match="must be a string"):
        check_text("name", 5, 256)
