"""The certs service: owns every credential the node uses (per-node client
certificate, delegate ServiceAccount tokens, the kubeconfigs built from them)
and checks that the node's identity has every RBAC permission it needs."""
