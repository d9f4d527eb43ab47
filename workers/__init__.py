"""Worker processes, one per device, and the pool that starts, feeds, watches and restarts them.

main.py is the process (attach rings, load the supernet once, warm up, serve), executor.py what
it runs (actuate, forward, cascades, infaas loads, CUDA staging), protocol.py what crosses the
rings besides input batches (BatchResult, control messages, WorkerConfig), loader.py where
networks come from, pool.py the WorkerPool the server uses.
"""
