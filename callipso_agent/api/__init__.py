"""The agent's HTTP server (aiohttp): health, read API, and (authenticated) write API."""
