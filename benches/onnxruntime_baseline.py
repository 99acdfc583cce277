"""onnxruntime baseline for benches/cpu.rs: median seconds per frame of mosaic.onnx.

Usage: python3 onnxruntime_baseline.py MODEL THREADS WxH [WxH ...]; prints JSON {"WxH": seconds}.
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

model, threads, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
results = {}
for size in sizes:
    width, height = map(int, size.split("x"))
    frame = (np.arange(3 * height * width, dtype=np.float32) * 7 % 251).reshape(1, 3, height, width)
    session.run(None, {"x": frame})
    times = []
    for _ in range(5):
        start = time.perf_counter()
        session.run(None, {"x": frame})
        times.append(time.perf_counter() - start)
    results[size] = statistics.median(times)
print(json.dumps(results))
