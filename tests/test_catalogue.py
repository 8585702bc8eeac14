"""The product catalogue a fresh install is seeded with."""

from __future__ import annotations

import pytest

from haggler.core.catalogue import SEED_CATALOGUE, Product, find_product
from haggler.core.negotiation import money


def test_the_seed_catalogue_is_small_realistic_and_valid() -> None:
    assert 5 <= len(SEED_CATALOGUE) <= 50
    names = [product.name.casefold() for product in SEED_CATALOGUE]
    assert len(set(names)) == len(names), "product names must be unique, ignoring case"
    assert len({product.category for product in SEED_CATALOGUE}) >= 3
    for product in SEED_CATALOGUE:
        assert money(product.list_price) == product.list_price
    prices = [product.list_price for product in SEED_CATALOGUE]
    assert min(prices) < 50 < 1000 < max(prices)


def test_find_product_ignores_case() -> None:
    product = SEED_CATALOGUE[0]
    assert find_product(product.name.upper()) is product
    assert find_product(product.name.lower()) is product


def test_an_unknown_product_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown product") as error:
        find_product("Flux capacitor")
    for product in SEED_CATALOGUE:
        assert product.name in str(error.value)


def test_find_product_searches_the_catalogue_it_is_given() -> None:
    catalogue = (Product("Widget", "parts", 2.5),)
    assert find_product("widget", catalogue).list_price == 2.5
    with pytest.raises(ValueError, match="Widget"):
        find_product(SEED_CATALOGUE[0].name, catalogue)


@pytest.mark.parametrize(
    ("name", "category", "price"),
    [("", "parts", 1.0), ("  ", "parts", 1.0), ("Widget", " ", 1.0), ("Widget", "parts", 0.0)],
)
def test_a_product_needs_a_name_a_category_and_a_price(
    name: str, category: str, price: float
) -> None:
    with pytest.raises(ValueError):
        Product(name, category, price)
