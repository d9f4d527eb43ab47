"""CascadeServe's offline half on one supernet: the gear planner (plan) and the cost search
(cost), which run the simulator, and their CLI, `python -m loadgen gears {record,estimate,plan,cost}`.

The online half lives in the scheduling core: server/sched/cascade.py (accuracy and escalation
replayed from recorded predictions, batch times), server/sched/gearplan.py (the plan JSON) and
server/sched/policies/gears.py (the policy that switches gears by measured load).
"""
