"""`make bench`: hubspot-oauth's local HubSpot and token store against the limit of their
stack and against Node.js peers, measured side by side in one run (issue 7).

Run as ``python -m benchmarks`` from the repository root; see `benchmarks.cli`.
"""
