"""A seller program against haggler: open with an ask, concede towards a floor, accept any offer
at or above it. HAGGLER_URL=http://127.0.0.1:8000 HAGGLER_TOKEN=<seller token> python seller.py"""

import os
import uuid
from decimal import Decimal

import httpx2 as httpx

FLOOR, ASK, STEP = Decimal("240.00"), Decimal("320.00"), Decimal("0.95")
api = httpx.Client(
    base_url=os.environ["HAGGLER_URL"],
    headers={"Authorization": f"Bearer {os.environ['HAGGLER_TOKEN']}"},
)


def send(path: str, body: dict[str, object]) -> dict:
    # A fresh key per move: a retry after a timeout would reuse it and apply only once.
    answer = api.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    answer.raise_for_status()  # 4xx: the body's `detail` says why, and nothing changed
    return answer.json()


view = send("/api/sell", {"product_id": 1, "quantity": 10, "asking_price": str(ASK)})["negotiation"]
while view["status"] == "open":
    offer, moves = view["buyer_last_move"], f"/api/negotiations/{view['id']}/moves"
    print(f"round {view['round']} of {view['max_rounds']}: agent {offer['move']} {offer['price']}")
    if offer["move"] == "counter" and Decimal(offer["price"]) >= FLOOR:
        body: dict[str, object] = {"move": "accept"}
    else:
        ASK = max(FLOOR, (ASK * STEP).quantize(Decimal("0.01")))
        body = {"move": "counter", "price": str(ASK)}
    view = send(moves, {**body, "expected_turns": len(view["transcript"])})
print(view["outcome"], view["deal_price"], view["currency"])
