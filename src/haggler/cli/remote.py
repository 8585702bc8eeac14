"""`haggler negotiate --url`: a person plays the seller against a running service, at the prompt."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import click


class ServiceError(click.ClickException):
    """The service refused a request; its message is shown as is."""


def _call(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        detail = json.loads(error.read() or b"{}").get("detail", error.reason)
        if isinstance(detail, list):  # validation errors: the first one's message
            detail = detail[0].get("msg", detail)
        raise ServiceError(f"{error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise click.ClickException(f"cannot reach the service at {url}: {error}") from None


def _show_last(view: dict[str, Any]) -> None:
    turn = view["transcript"][-1]
    if turn["party"] == "buyer":
        what = {
            "counter": f"offers {turn['price']}",
            "accept": "accepts",
            "walk_away": "walks away",
        }
        click.echo(f"  round {turn['round']:2d}  buyer   {what[turn['move']]}")


def play_seller(
    url: str, purchaser_token: str, product: str, limit: float, rounds: int, quantity: int
) -> None:
    """Open with an ask (as the purchaser whose token this is), then counter, accept or walk
    away with the negotiation's seller token until the negotiation ends."""
    base = url.rstrip("/")
    products = {p["name"]: p for p in _call("GET", f"{base}/api/products", token=purchaser_token)}
    if product not in products:
        raise click.ClickException(f"the service has no product {product!r}")
    item = products[product]
    click.echo(f"You sell {quantity} x {product} (list price {item['list_price']}).")
    while True:
        ask = click.prompt("Your asking price", type=float)
        try:
            started = _call(
                "POST",
                f"{base}/api/negotiations",
                {
                    "product_id": item["id"],
                    "quantity": quantity,
                    "max_unit_price": f"{limit:.2f}",
                    "max_rounds": rounds,
                    "seller": {"kind": "external", "asking_price": f"{ask:.2f}"},
                },
                purchaser_token,
            )
            break
        except ServiceError as error:
            click.echo(f"  refused: {error.message}")
    token, view = started["seller_token"], started["negotiation"]
    negotiation = f"{base}/api/negotiations/{view['id']}/moves"
    _show_last(view)
    while view["status"] == "open":
        answer = click.prompt("Your move (a price to counter, 'accept' or 'walk')").strip().lower()
        if answer in ("accept", "a"):
            body: dict[str, Any] = {"move": "accept"}
        elif answer in ("walk", "w", "walk away"):
            body = {"move": "walk_away"}
        else:
            body = {"move": "counter", "price": answer}
        try:
            view = _call("POST", negotiation, body, token)
        except ServiceError as error:
            click.echo(f"  refused: {error.message}")
            continue
        _show_last(view)
    if view["outcome"] == "deal":
        click.echo(f"Deal at {view['deal_price']} per unit.")
    else:
        click.echo(f"No deal ({view['outcome']}).")
