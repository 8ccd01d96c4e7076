"""The webhook wing: signing (Standard Webhooks), which destinations are allowed (SSRF), the retry
policy, and every SQL statement about endpoints and deliveries. The dispatcher process that uses
them is `workers/dispatcher.py`; the api's routes are `service/webhooks.py`."""
