"""`fcos`: one command for the whole product (serve, train, export, evaluate, ...)."""
