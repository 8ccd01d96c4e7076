"""The worker side of jobwire: job types, the runtime around them, and the ARQ worker."""
