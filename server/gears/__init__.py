"""CascadeServe on one supernet: cascades of its subnets, an offline gear plan, and (in
server/policies/gears.py) the online policy that switches gears by measured load.

Modules: cascade (accuracy and escalation replayed from recorded predictions, batch times),
plan_format (the plan JSON), plan (the offline planner), cost (workers needed vs baselines);
`python -m server.gears {record,plan,cost}`.
"""
