"""Filters for search and recommend, written as Python expressions:

    (F("lang") == "en") & (F("price") <= 50) & ~F("tags").any_of("sale", "used")
    F("stock").exists() | F.has_id(1, 2, 3)

`==` `!=` `<` `<=` `>` `>=` on a field, `.any_of(...)`, `.exists()`, `F.has_id(...)`,
combined with `&` (all), `|` (at least one) and `~` (not). A plain dict in the proto's
JSON mapping (what `quiver search --filter` takes) or a JSON string is accepted wherever
an expression is. Semantics are the server's (README "Filters"): a string matches a
string attribute or any element of a string list; int and float compare numerically; an
item without the key fails every test but `exists`, so `F("k") != v` (= `~(F("k") == v)`)
also matches items without "k" — add `& F("k").exists()` to leave them out."""
from __future__ import annotations

import json
from typing import Any, Iterable, List, Mapping, Sequence, Union

import numpy as np
from google.protobuf import json_format

from ._pb import quiver_pb2 as pb

Scalar = Union[str, int, float, bool]


def to_value(v: Any, what: str = "value") -> pb.Value:
    """A Python attribute value as a quiver.v1.Value: str, int, float, bool, list of str."""
    if isinstance(v, (bool, np.bool_)):
        return pb.Value(bool_value=bool(v))
    if isinstance(v, (int, np.integer)):
        iv = int(v)
        if not -(1 << 63) <= iv < (1 << 63):
            raise ValueError("%s %d does not fit in int64" % (what, iv))
        return pb.Value(int_value=iv)
    if isinstance(v, (float, np.floating)):
        return pb.Value(double_value=float(v))
    if isinstance(v, str):
        return pb.Value(string_value=v)
    if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
        return pb.Value(string_list=pb.StringList(values=list(v)))
    raise TypeError("%s %r has type %s; want str, int, float, bool or a list of str"
                    % (what, v, type(v).__name__))


def from_value(v: pb.Value) -> Any:
    """A quiver.v1.Value as the Python value it was written from."""
    kind = v.WhichOneof("kind")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "string_list":
        return list(v.string_list.values)
    return None


class Expr:
    """A filter expression; combine with & | ~ and pass as `filter=`."""

    def __and__(self, other: "Expr") -> "Expr":
        return And(_parts(self, And) + _parts(_check(other), And))

    def __or__(self, other: "Expr") -> "Expr":
        return Or(_parts(self, Or) + _parts(_check(other), Or))

    def __invert__(self) -> "Expr":
        return Not(self)

    def to_proto(self) -> pb.Filter:
        """The quiver.v1.Filter this expression means (nesting kept shallow: the server
        allows 4 levels)."""
        raise NotImplementedError

    def to_dict(self) -> Any:
        """The filter in the proto's JSON mapping (what `quiver search --filter` takes)."""
        return json_format.MessageToDict(self.to_proto())

    def __bool__(self) -> bool:
        raise TypeError("a filter expression has no truth value: combine with & | ~, "
                        "not `and`/`or`/`not`, and put comparisons in parentheses")


def _check(x: Any) -> Expr:
    if not isinstance(x, Expr):
        raise TypeError("cannot combine a filter with %r (a %s); build both sides with F(...)"
                        % (x, type(x).__name__))
    return x


def _parts(x: Expr, kind: type) -> List[Expr]:
    if type(x) is kind and isinstance(x, (And, Or)):
        return list(x.children)
    return [x]


class Cond(Expr):
    """One condition: a field test or has_id."""

    def __init__(self, cond: pb.Condition) -> None:
        self.cond = cond

    def to_proto(self) -> pb.Filter:
        return pb.Filter(must=[self.cond])

    def __repr__(self) -> str:
        return "Cond(%s)" % json.dumps(json_format.MessageToDict(self.cond))


class And(Expr):
    def __init__(self, children: Sequence[Expr]) -> None:
        self.children = list(children)

    def to_proto(self) -> pb.Filter:
        f = pb.Filter()
        ors = [c for c in self.children if isinstance(c, Or)]
        for c in self.children:
            if isinstance(c, Not):
                inner = c.child
                if isinstance(inner, Or):            # and not (a or b) = none of a, b
                    f.must_not.extend(_condition(x) for x in inner.children)
                else:
                    f.must_not.append(_condition(inner))
            elif isinstance(c, Or) and c is ors[0]:  # one "or" fits in `should`
                f.should.extend(_condition(x) for x in c.children)
            else:
                f.must.append(_condition(c))
        return f

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.children)) + ")"


class Or(Expr):
    def __init__(self, children: Sequence[Expr]) -> None:
        self.children = list(children)

    def to_proto(self) -> pb.Filter:
        return pb.Filter(should=[_condition(c) for c in self.children])

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.children)) + ")"


class Not(Expr):
    def __init__(self, child: Expr) -> None:
        self.child = child

    def __invert__(self) -> Expr:
        return self.child

    def to_proto(self) -> pb.Filter:
        if isinstance(self.child, Or):
            return pb.Filter(must_not=[_condition(c) for c in self.child.children])
        return pb.Filter(must_not=[_condition(self.child)])

    def __repr__(self) -> str:
        return "~%r" % (self.child,)


def _condition(x: Expr) -> pb.Condition:
    if isinstance(x, Cond):
        return x.cond
    return pb.Condition(filter=x.to_proto())


def _bound(v: Any, inclusive: bool, op: str, key: str) -> pb.Bound:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError("F(%r) %s %r: a range needs a number" % (key, op, v))
    return pb.Bound(value=float(v), inclusive=inclusive)


class F:
    """A reference to an attribute: F("price") <= 50 is a filter condition."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("F() needs an attribute name, got %r" % (key,))
        self.key = key

    def _field(self, **test: Any) -> Cond:
        return Cond(pb.Condition(field=pb.FieldCondition(key=self.key, **test)))

    def __eq__(self, v: Any) -> Expr:  # type: ignore[override]
        """Equal: a string matches a string or any element of a string list; numbers
        compare numerically (5 matches 5.0); bool matches bool."""
        return self._field(equals=to_value(v, "F(%r) ==" % self.key))

    def __ne__(self, v: Any) -> Expr:  # type: ignore[override]
        """Not equal: ~(F(k) == v); items without the key match too."""
        return Not(self == v)

    def __lt__(self, v: Any) -> Expr:
        return self._field(range=pb.Range(upper=_bound(v, False, "<", self.key)))

    def __le__(self, v: Any) -> Expr:
        return self._field(range=pb.Range(upper=_bound(v, True, "<=", self.key)))

    def __gt__(self, v: Any) -> Expr:
        return self._field(range=pb.Range(lower=_bound(v, False, ">", self.key)))

    def __ge__(self, v: Any) -> Expr:
        return self._field(range=pb.Range(lower=_bound(v, True, ">=", self.key)))

    def between(self, lo: float, hi: float, inclusive: bool = True) -> Expr:
        """lo <= value <= hi (both bounds exclusive with inclusive=False), one range test."""
        return self._field(range=pb.Range(lower=_bound(lo, inclusive, "between", self.key),
                                          upper=_bound(hi, inclusive, "between", self.key)))

    def any_of(self, *values: Any) -> Expr:
        """Equal to any of the values: F("lang").any_of("en", "de") or .any_of(["en", "de"])."""
        if len(values) == 1 and isinstance(values[0], (list, tuple, set, frozenset, np.ndarray)):
            values = tuple(values[0])
        return self._field(any_of=pb.ValueList(
            values=[to_value(v, "F(%r).any_of" % self.key) for v in values]))

    def exists(self, present: bool = True) -> Expr:
        """The item has the key (present=False: has not)."""
        return self._field(exists=bool(present))

    @staticmethod
    def has_id(*ids: Any) -> Expr:
        """The item's id is one of ids: F.has_id(1, 2) or F.has_id([1, 2]) or an array."""
        if len(ids) == 1 and not isinstance(ids[0], (int, np.integer)):
            ids = tuple(ids[0])
        return Cond(pb.Condition(has_id=pb.IdList(ids=[int(i) for i in ids])))

    def __repr__(self) -> str:
        return "F(%r)" % self.key


FilterLike = Union[Expr, Mapping[str, Any], str, pb.Filter]


def to_filter(f: Any) -> pb.Filter:
    """A filter= argument as a quiver.v1.Filter: an F expression, a dict in the proto's
    JSON mapping, the same as a JSON string, or a Filter message."""
    if isinstance(f, Expr):
        return f.to_proto()
    if isinstance(f, str):
        f = json.loads(f)
    if isinstance(f, Mapping):
        try:
            parsed: pb.Filter = json_format.ParseDict(f, pb.Filter())
            return parsed
        except json_format.ParseError as e:
            raise ValueError("filter: %s" % e) from None
    if isinstance(f, pb.Filter):
        return f
    if hasattr(f, "SerializeToString") and type(f).__name__ == "Filter":
        other: pb.Filter = pb.Filter.FromString(f.SerializeToString())  # another stub copy's Filter
        return other
    raise TypeError("filter must be an F(...) expression, a dict or JSON string in the "
                    "proto's JSON mapping, or a quiver.v1.Filter; got %s" % type(f).__name__)


def ids_of(ids: Iterable[Any]) -> List[int]:
    """Ids as Python ints (0 .. 2^63-1 on the wire)."""
    return [int(i) for i in ids]
