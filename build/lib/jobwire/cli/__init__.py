"""The `jobwire` command: the processes (api, worker, dispatcher, dev, migrate), key management, and
the command-line client (submit, watch). Not part of the api: it starts it."""
