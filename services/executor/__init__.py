"""The executor: the only privileged process. Runs delegate CNI plugins and inspects network namespaces."""
