"""The jobwire api: an aiohttp application (REST, long-polls, health) and the `jobwire` command."""
