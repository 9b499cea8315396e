"""List answers as RabbitMQ's management API shapes them: sort, filter, page, columns.

Every list endpoint takes ``sort`` (a field, dotted for nested ones such as
``message_stats.publish_details.rate``) and ``sort_reverse``, and ``columns`` (a comma
list of fields to keep). Pagination is opt-in by ``page`` (from 1), as in RabbitMQ: with
it the answer is ``{"items", "page", "page_size", "page_count", "item_count",
"filtered_count", "total_count"}``, ``page_size`` is 1..500 (default 100), and ``name``
filters by a case-insensitive substring, or a case-insensitive regular expression with
``use_regex=true``. Bad parameters are 400s with RabbitMQ's error names. Without
``page`` the whole list comes back as a JSON array, sorted by vhost and name (then
user, for permissions) unless told otherwise. Owns nothing; pure functions over lists of dicts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from warrenmq.management.auth import HttpError, bad_request

T = TypeVar("T")
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


def dig(item: Mapping[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _sort_key(value: Any) -> tuple[Any, ...]:
    if isinstance(value, bool | int | float):
        return (0, value)
    if isinstance(value, str):
        return (1, value.lower(), value)
    return (2, "")


def pick(item: Mapping[str, Any], columns: list[str]) -> dict[str, Any]:
    """Only ``columns`` of ``item`` (dotted names keep their nesting)."""
    out: dict[str, Any] = {}
    for column in columns:
        value = dig(item, column)
        if value is None and column.split(".")[0] not in item:
            continue
        target = out
        parts = column.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return out


def _positive(query: Mapping[str, str], key: str, default: int | None) -> int | None:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request("Pagination parameters are invalid") from None


def _name_filter(query: Mapping[str, str]) -> re.Pattern[str] | None:
    name = query.get("name")
    if not name:
        return None
    if query.get("use_regex") == "true":
        try:
            return re.compile(name, re.IGNORECASE)
        except re.error:
            raise bad_request("Pagination parameters are invalid") from None
    return re.compile(re.escape(name), re.IGNORECASE)


def arrange(query: Mapping[str, str], items: Iterable[dict[str, Any]]) -> Any:
    """The JSON answer for a list request: sorted, filtered, paged and cut to columns."""
    out = list(items)
    sort = query.get("sort")
    if sort:
        out.sort(key=lambda item: _sort_key(dig(item, sort)),
                 reverse=query.get("sort_reverse") == "true")
    else:  # RabbitMQ's default order: by vhost, then name
        out.sort(key=lambda item: (str(item.get("vhost", "")), str(item.get("name", "")),
                                   str(item.get("user", ""))),
                 reverse=query.get("sort_reverse") == "true")
    columns = [c for c in (query.get("columns") or "").split(",") if c]
    if "page" not in query:
        return [pick(item, columns) for item in out] if columns else out
    page, size = _page(query)
    pattern = _name_filter(query)
    total = len(out)
    if pattern is not None:
        out = [item for item in out if pattern.search(str(item.get("name", "")))]
    items = _cut(out, page, size)
    if columns:
        items = [pick(item, columns) for item in items]
    return _answer(items, page, size, len(out), total)


def _page(query: Mapping[str, str]) -> tuple[int, int]:
    page = _positive(query, "page", 1)
    size = _positive(query, "page_size", DEFAULT_PAGE_SIZE)
    if page is None or size is None or page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        shown = "undefined" if "page_size" not in query else size
        raise HttpError(400, "invalid_pagination_parameters",
                        f"Invalid pagination parameters: page number {page}, page size {shown}")
    return page, size


def _cut(out: Sequence[T], page: int, size: int) -> list[T]:
    if page > max(1, math.ceil(len(out) / size)):
        raise HttpError(400, "page_out_of_range",
                        f"Page out of range, page: {page} page size: {size}, len: {len(out)}")
    return list(out[(page - 1) * size:page * size])


def _answer(items: list[dict[str, Any]], page: int, size: int, filtered: int,
            total: int) -> dict[str, Any]:
    return {"filtered_count": filtered, "item_count": len(items), "items": items,
            "page": page, "page_count": math.ceil(filtered / size), "page_size": size,
            "total_count": total}


def arrange_lazy(query: Mapping[str, str], objects: Sequence[T],
                 render: Callable[[T], dict[str, Any]], name: Callable[[T], str],
                 vhost: Callable[[T], str], keys: Mapping[str, Callable[[T], Any]]) -> Any:
    """``arrange`` for long lists: when a page is asked for and the sort field is one of
    ``keys`` (read straight off the objects), filter, sort and page the objects first and
    render only the page's items (10,000 queues: one page costs ~100 renders, not
    10,000). Anything else renders every object and goes through ``arrange``."""
    sort = query.get("sort")
    if "page" not in query or (sort and sort not in keys):
        return arrange(query, (render(o) for o in objects))
    reverse = query.get("sort_reverse") == "true"
    if sort:
        key = keys[sort]
        ordered = sorted(objects, key=lambda o: _sort_key(key(o)), reverse=reverse)
    else:
        ordered = sorted(objects, key=lambda o: (vhost(o), name(o)), reverse=reverse)
    pattern = _name_filter(query)
    if pattern is not None:
        ordered = [o for o in ordered if pattern.search(name(o))]
    page, size = _page(query)
    columns = [c for c in (query.get("columns") or "").split(",") if c]
    items = [render(o) for o in _cut(ordered, page, size)]
    if columns:
        items = [pick(item, columns) for item in items]
    return _answer(items, page, size, len(ordered), len(objects))
