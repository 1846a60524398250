"""Kubernetes manifests of the add-on, and the generator of their exec-probe variant."""
