"""Products and the catalogue a fresh install is seeded with."""

from __future__ import annotations

from dataclasses import dataclass

from haggler.core.negotiation import money


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    category: str
    list_price: float
    """Reference list price per unit."""

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a product needs a name")
        if not self.category.strip():
            raise ValueError("a product needs a category")
        money(self.list_price)


SEED_CATALOGUE: tuple[Product, ...] = (
    Product("Ergonomic office chair", "furniture", 289.00),
    Product("Standing desk frame", "furniture", 449.00),
    Product('27" 4K monitor', "electronics", 329.99),
    Product('Business laptop 14"', "electronics", 1149.00),
    Product("Wireless keyboard and mouse set", "electronics", 59.90),
    Product("Noise-cancelling headset", "electronics", 179.00),
    Product("A4 copy paper, box of 5 reams", "office supplies", 32.50),
    Product("Laser toner cartridge", "office supplies", 89.00),
    Product("Industrial safety gloves, 12 pairs", "safety", 24.75),
    Product("Hard hat, EN 397", "safety", 18.40),
    Product("Stainless steel hex bolts M8, box of 200", "hardware", 41.20),
    Product("Cordless drill 18 V", "tools", 139.00),
    Product("Arabica coffee beans, 1 kg", "catering", 22.90),
    Product("Commercial espresso machine", "catering", 2390.00),
)
"""A small, realistic catalogue for demos, training and tests; the list prices span 18 to 2,390."""


def find_product(name: str, catalogue: tuple[Product, ...] = SEED_CATALOGUE) -> Product:
    """The product called `name` (case-insensitive), or a ValueError naming the known ones."""
    for product in catalogue:
        if product.name.casefold() == name.casefold():
            return product
    known = ", ".join(p.name for p in catalogue)
    raise ValueError(f"unknown product {name!r}; known products: {known}")
