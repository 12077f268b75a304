"""Online feature stores (Redis, embedded) behind one interface, with a circuit breaker."""
