"""The HTTP API: app factory and lifespan, dependencies, routes, schemas."""
