"""Node disk as a managed resource: admission with reservations, cleanup policies, usage."""
