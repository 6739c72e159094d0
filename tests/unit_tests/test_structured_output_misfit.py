"""Which schemas the default of ``with_structured_output`` sends as Claude's structured outputs.

``structured_output_misfit`` admits only what the documented subset surely takes: a schema it
passes is sent as ``json_schema`` where no tool can be forced; one it flags keeps the tool (an
explicit ``method="json_schema"`` sends any schema as given). The table: realistic pydantic,
TypedDict, JSON-schema and OpenAI-tool inputs, each as ``convert_to_json_schema`` gives it.
"""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, Literal

import pytest
from langchain_core.utils.function_calling import convert_to_json_schema
from pydantic import BaseModel, Field, HttpUrl
from typing_extensions import TypedDict

from langchain_claude_relay._structured import structured_output_misfit


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Person(BaseModel):
    """A person."""

    name: str = Field(description="the full name")
    age: int


class Everyday(BaseModel):
    person: Person
    people: list[Person]
    nickname: str | None = None
    kind: Literal["a", "b"] = "a"
    when: datetime.datetime
    day: datetime.date
    id: uuid.UUID
    color: Color
    score: float
    ok: bool
    tags: list[str] = []
    either: int | str


class Movie(TypedDict):
    title: str
    year: int


class Counts(BaseModel):
    counts: dict[str, int]


class Bounded(BaseModel):
    age: int = Field(ge=0)


class Short(BaseModel):
    name: str = Field(max_length=80)


class Link(BaseModel):
    url: HttpUrl


class Anything(BaseModel):
    value: Any = Field(description="whatever it is")


class Tree(BaseModel):
    name: str
    children: list[Tree] = []


class Cat(BaseModel):
    kind: Literal["cat"]


class Dog(BaseModel):
    kind: Literal["dog"]


class Pet(BaseModel):
    pet: Cat | Dog = Field(discriminator="kind")


class Blob(BaseModel):
    data: bytes


def _tool(parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": "f", "description": "", "parameters": parameters},
    }


FITS = [Person, Everyday, Movie, _tool({"type": "object", "properties": {"a": {"type": "string"}}})]

MISFITS = [
    (Counts, "no named properties"),
    (Bounded, "'minimum'"),
    (Short, "'maxLength'"),
    (Link, "'maxLength'"),
    (Anything, "any type"),
    (Tree, "any type"),  # LangChain cuts the cycle to {}
    (Pet, "'discriminator'"),
    (Blob, "format"),
    (_tool({"type": "object", "properties": {"meta": {"type": "object"}}}), "no named properties"),
    (_tool({"type": "object", "properties": {"a": {"type": "array"}}}), "items"),
    (
        _tool({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}}),
        "pattern",
    ),
    (
        _tool({"type": "object", "properties": {"a": {"type": "array", "items": {"$ref": "#"}}}}),
        "'#'",
    ),
    (_tool({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}}), "'oneOf'"),
]


@pytest.mark.parametrize("schema", FITS, ids=lambda s: getattr(s, "__name__", "tool"))
def test_what_the_documented_subset_surely_takes_fits(schema: Any) -> None:
    assert structured_output_misfit(convert_to_json_schema(schema)) is None


@pytest.mark.parametrize(("schema", "why"), MISFITS, ids=lambda s: getattr(s, "__name__", None))
def test_what_it_may_refuse_is_flagged_with_where(schema: Any, why: str) -> None:
    found = structured_output_misfit(convert_to_json_schema(schema))
    assert found is not None
    assert why in found, found


def test_a_recursive_definition_is_flagged() -> None:
    node = {
        "type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/N"}}},
    }
    schema = {"type": "object", "$defs": {"N": node}, "properties": {"root": {"$ref": "#/$defs/N"}}}
    assert "recursive" in (structured_output_misfit(schema) or "")
    flat = {"type": "object", "properties": {"name": {"type": "string"}}}
    ok = {"type": "object", "$defs": {"N": flat}, "properties": {"root": {"$ref": "#/$defs/N"}}}
    assert structured_output_misfit(ok) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"type": {"x": 1}},
        {"type": ["string", {"x": 1}]},
        {"type": "str"},
        {"type": "string", "format": ["x"]},
        {"$ref": ["#/$defs/X"]},
        {"enum": [{"k": 1}]},
        {"enum": []},
        {"const": {"k": 1}},
        {"type": "array", "items": {"type": "string"}, "minItems": True},
        {"type": "object", "properties": ["a"]},
        {"anyOf": []},
        {"allOf": [{"$ref": "#/$defs/X"}]},
    ],
)
def test_a_malformed_or_unsupported_subschema_is_a_reason_not_a_crash(bad: dict[str, Any]) -> None:
    schema = {"type": "object", "properties": {"a": bad}, "$defs": {"X": {"type": "string"}}}
    assert isinstance(structured_output_misfit(schema), str)


def test_a_schema_too_deep_to_check_keeps_the_tool(make_llm: Any) -> None:
    """Past Python's recursion limit: the unforced tool, with a warning, never a crash."""
    leaf: dict[str, Any] = {"type": "string"}
    for _ in range(2_000):
        leaf = {"type": "object", "properties": {"a": leaf}, "required": ["a"]}
    schema = {"title": "Deep", **leaf}
    with pytest.warns(UserWarning, match="nested too deeply"):
        make_llm(model="claude-sonnet-5-5").with_structured_output(schema)
