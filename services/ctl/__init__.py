"""multusctl: the operator's command line over the services' gRPC sockets on a node."""
