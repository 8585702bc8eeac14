"""The negotiation itself, free of any model, web or database: the protocol and the reward
(`negotiation`), the catalogue, the simulated seller families, the buyer's observations and moves
(`features`), scenarios, THE game loop (`play`: one buyer against one seller), the transitions a
negotiation gives the learner, and the Gymnasium environment built on the game loop.

Imports nothing of haggler's but `haggler.config`'s leaves; numpy, scipy and gymnasium only."""
