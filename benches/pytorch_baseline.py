"""PyTorch baseline for benches/gpu.rs: the same TransformerNet (pytorch/examples), same weights.

Usage: python3 pytorch_baseline.py WEIGHTS.safetensors BATCH WxH [WxH ...]
Prints JSON: seconds per frame for PyTorch fp32 (TF32 off), PyTorch default (cuDNN may use TF32),
PyTorch in half precision with cudnn.benchmark (fp16 NCHW, fp16 channels_last, bf16
channels_last: the fastest is PyTorch's best), and the GPU's measured matrix peak.
"""
import json
import struct
import sys
import time

import torch
from torch import nn


def load_safetensors(path):
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = {"F16": torch.float16, "F32": torch.float32}[info["dtype"]]
        tensors[name] = torch.frombuffer(bytearray(data[start:end]), dtype=dtype).reshape(info["shape"]).float()
    return tensors


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, k, stride, upsample=False):
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        if self.upsample:
            x = nn.functional.interpolate(x, mode="nearest", scale_factor=2)
        return self.conv2d(self.pad(x))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.in1 = ConvLayer(c, c, 3, 1), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = ConvLayer(c, c, 3, 1), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x):
        return x + self.in2(self.conv2(torch.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.in1 = ConvLayer(3, 32, 9, 1), nn.InstanceNorm2d(32, affine=True)
        self.conv2, self.in2 = ConvLayer(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.conv3, self.in3 = ConvLayer(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        for i in range(1, 6):
            setattr(self, f"res{i}", Residual(128))
        self.deconv1, self.in4 = ConvLayer(128, 64, 3, 1, True), nn.InstanceNorm2d(64, affine=True)
        self.deconv2, self.in5 = ConvLayer(64, 32, 3, 1, True), nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, 9, 1)

    def forward(self, x):
        y = torch.relu(self.in1(self.conv1(x)))
        y = torch.relu(self.in2(self.conv2(y)))
        y = torch.relu(self.in3(self.conv3(y)))
        for i in range(1, 6):
            y = getattr(self, f"res{i}")(y)
        y = torch.relu(self.in4(self.deconv1(y)))
        y = torch.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def seconds_per_frame(model, batch, height, width, dtype, channels_last):
    x = torch.rand(batch, 3, height, width, device="cuda", dtype=dtype) * 255
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        runs = 10
        start = time.perf_counter()
        for _ in range(runs):
            model(x)
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (runs * batch)


def matrix_peak_tflops(dtype):
    n = 8192
    a = torch.rand(n, n, device="cuda", dtype=dtype)
    b = torch.rand(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * 20 / (time.perf_counter() - start) / 1e12


weights, batch, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
model = TransformerNet()
model.load_state_dict(load_safetensors(weights))
model = model.cuda().eval()
results = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "sizes": {}}
for size in sizes:
    width, height = map(int, size.split("x"))
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    fp32 = seconds_per_frame(model.float(), batch, height, width, torch.float32, False)
    torch.backends.cudnn.allow_tf32 = True
    default = seconds_per_frame(model.float(), batch, height, width, torch.float32, False)
    torch.backends.cudnn.benchmark = True
    fp16_nchw = seconds_per_frame(model.half(), batch, height, width, torch.float16, False)
    best_model = model.half().to(memory_format=torch.channels_last)
    best = seconds_per_frame(best_model, batch, height, width, torch.float16, True)
    bf16_model = model.bfloat16().to(memory_format=torch.channels_last)
    bf16 = seconds_per_frame(bf16_model, batch, height, width, torch.bfloat16, True)
    model = model.float().to(memory_format=torch.contiguous_format)
    results["sizes"][size] = {
        "fp32_tf32_off": fp32,
        "default_fp32": default,
        "fp16_nchw": fp16_nchw,
        "best_fp16_channels_last": best,
        "bf16_channels_last": bf16,
    }
torch.backends.cuda.matmul.allow_tf32 = False
results["matrix_peak_tflops"] = {"fp32": matrix_peak_tflops(torch.float32), "bf16": matrix_peak_tflops(torch.bfloat16)}
print(json.dumps(results))
