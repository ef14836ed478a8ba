"""`PYTHONPATH=k8s-tests python -m cluster up|down|status` (make cluster-up, cluster-down)."""

from .controlplane import main

main()
