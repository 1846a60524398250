"""The host-side CNI binary (multus_shim.py) and its installer (install.py)."""
