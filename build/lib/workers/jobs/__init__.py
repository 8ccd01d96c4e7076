"""Job types shipped with jobwire. Every module here is imported by the worker and the api at
start-up; add a module to add job types (see the README, "Adding a job type")."""
