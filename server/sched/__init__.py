"""The scheduling core: requests, outcomes, the EDF queue, the rate meter, the policies and the
Scheduler that turns events into actions. Pure code shared by the live dispatcher
(server/dispatcher.py) and loadgen's simulator: no asyncio, no HTTP, no loadgen, no torch.
"""
