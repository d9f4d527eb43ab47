"""HTTP clients of the KServe v2 front end: a lean keep-alive one (rawhttp) for the bench, an aiohttp one (v2) for replays and tests."""
