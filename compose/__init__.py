"""Ways the four services are put together: the local supervisor, containers, Kubernetes."""
