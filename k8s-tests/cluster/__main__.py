"""`python -m cluster up|down|status`, run from k8s-tests/ (make cluster-up, cluster-down)."""

from .controlplane import main

main()
