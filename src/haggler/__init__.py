"""haggler: a buyer-side negotiation agent that haggles unit prices and learns online."""

__version__ = "0.1.0"


def _register_gymnasium_env() -> None:
    # Registration stores only the entry-point string; the environment module loads on make().
    import gymnasium

    if "haggler/Negotiation-v0" not in gymnasium.envs.registry:
        gymnasium.register(
            id="haggler/Negotiation-v0", entry_point="haggler.core.env:NegotiationEnv"
        )


_register_gymnasium_env()
