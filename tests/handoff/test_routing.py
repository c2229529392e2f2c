"""The category -> department table."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoff.errors import RoutingError
from handoff.routing import DEFAULT_DEPARTMENT, Routing


def test_defaults_follow_the_sop() -> None:
    routing = Routing()
    assert {c: routing.department_for(c) for c in (
        "product", "service", "logistics", "after_sales", "compliance")} == {
        "product": "quality", "service": "operations", "logistics": "logistics",
        "after_sales": "after_sales", "compliance": "legal_compliance"}
    assert routing.department_for(None) == DEFAULT_DEPARTMENT
    assert routing.department_for("something_new") == DEFAULT_DEPARTMENT


def test_a_file_overrides_some_routes(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("routes:\n  logistics: warehouse\ndefault: front_desk\n", encoding="utf-8")
    routing = Routing.load(path)
    assert routing.department_for("logistics") == "warehouse"
    assert routing.department_for("product") == "quality"
    assert routing.department_for(None) == "front_desk"


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    assert Routing.load(tmp_path / "absent.yaml") == Routing()


@pytest.mark.parametrize("content", [
    "routes: [a, b]\n", "routes:\n  product: Quality Dept\n", "colour: blue\n", "- 1\n",
    "routes: {product: [\n",
])
def test_malformed_files_are_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RoutingError):
        Routing.load(path)


def test_the_table_cannot_be_changed_afterwards() -> None:
    routing = Routing()
    with pytest.raises(TypeError):
        routing.routes["product"] = "marketing"  # type: ignore[index]
