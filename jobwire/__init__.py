"""Code that both the api (service/) and the workers (workers/) need: settings, database access,
Redis key names, the job store and the job representation."""
