"""Shared-memory rings between the server's event loop and the worker processes.

names.py owns every segment/semaphore name (and the cleanup/sweep), header.py the SlotHeader
record, ring.py the slot ring, wakeup.py the semaphore/eventfd wake-ups, lifeline.py the
die-with-parent guard for child processes, bench.py `python -m shm bench`.
"""
