"""Serving negotiations: `NegotiationService` (the agent that negotiates, in Python and behind
the API), one turn of a negotiation (validate, decide, record) shared by the API and the CLI,
and the model versions every serving process follows in the store.

Imports `core`, `policy`, `store` and `safety`; `learning` (and so torch) only where a model file
is read or training runs in process, never on the path of a turn."""
