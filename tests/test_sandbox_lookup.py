"""The sandbox's quick lookup of ``a.b`` in a dict answers what Jinja's own lookup answers."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from postroom.correspondence.sandbox import LimitedSandbox

NAMES = ["items", "keys", "get", "update", "pop", "__class__", "__len__", "_private", "mro"]
names = st.one_of(st.sampled_from(NAMES), st.text(max_size=8))
values = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3)
)


def looked_up(env: LimitedSandbox, obj: Any, name: str, *, jinja: bool) -> object:
    found = (ImmutableSandboxedEnvironment.getattr if jinja else LimitedSandbox.getattr)(
        env, obj, name
    )
    if isinstance(found, Undefined):
        return ("undefined", type(found), found._undefined_name, found._undefined_obj is obj)
    if callable(found):
        return ("callable", getattr(found, "__name__", None), getattr(found, "__self__", None))
    return found


@settings(max_examples=300, deadline=None, database=None)
@given(st.dictionaries(names, values, max_size=5), names)
def test_a_dict_lookup_matches_jinja(data: dict[str, Any], name: str) -> None:
    env = LimitedSandbox(undefined=StrictUndefined)
    for obj in (data, OrderedDict(data)):
        assert looked_up(env, obj, name, jinja=False) == looked_up(env, obj, name, jinja=True)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ d.a }}", "1"),
        ("{{ d.items is callable }}", "True"),  # the method, as in Jinja, not the item
        ("{{ d.missing | default('none') }}", "none"),
        ("{{ d['items'] }}", "item"),
    ],
)
def test_templates_read_dicts_as_before(source: str, expected: str) -> None:
    env = LimitedSandbox(undefined=StrictUndefined)
    assert env.from_string(source).render(d={"a": 1, "items": "item"}) == expected
