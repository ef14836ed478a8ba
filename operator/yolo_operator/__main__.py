"""Run the operator: python -m yolo_operator [--namespace NS ...] [--all-namespaces].

The same code the image runs, against the current kubeconfig (or in-cluster config).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time

import kopf

from . import handlers  # noqa: F401  (registers the handlers)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--namespace", "-n", action="append", default=[], help="watch these namespaces (repeatable)")
    ap.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    ap.add_argument("--liveness", default=os.environ.get("YOLO_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz"))
    ap.add_argument(
        "--peering", default=os.environ.get("YOLO_OPERATOR_PEERING", ""), help="kopf peering name; empty: standalone"
    )
    ap.add_argument(
        "--priority",
        type=int,
        default=int(os.environ.get("YOLO_OPERATOR_PEERING_PRIORITY") or auto_priority()),
        help="kopf peering priority; default: the older the process, the higher (the longest-running replica leads)",
    )
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args(argv)
    namespaces = args.namespace or [n for n in os.environ.get("YOLO_OPERATOR_NAMESPACES", "").split(",") if n]
    clusterwide = args.all_namespaces or not namespaces
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=clusterwide,
        namespaces=() if clusterwide else namespaces,
        liveness_endpoint=args.liveness or None,
        standalone=not args.peering,
        peering_name=args.peering or None,
        priority=args.priority,
    )


def auto_priority() -> int:
    """Replicas of one Deployment must not share a priority: kopf pauses *every* operator that sees
    a live peer of its own priority. Older processes rank higher (milliseconds since start, a random
    tie-break), so the longest-running replica leads, a restarted or newly rolled one waits as a
    standby, and a leader is only replaced when it is gone (its peering lifetime runs out, or it
    said goodbye on SIGTERM)."""
    return (10**13 - int(time.time() * 1000)) * 1000 + random.randrange(1000)  # noqa: S311 - not a secret


if __name__ == "__main__":
    main()
