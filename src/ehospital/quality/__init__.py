"""quality domain: the centre managers' dashboard (response times, outcomes, refunds, workload)."""
