"""connect-anyio under test: the client and server the Connect conformance runner drives."""
