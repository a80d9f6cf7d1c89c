// Small static programs of our own for the real node (gpu_conformance.realnode), standard
// library only: the pod sandbox's pause, the workload stand-in baked into test images, and
// a certificate generator (the GPU host has no openssl guarantee and no Python crypto).
module github.com/gpu-conformance/tools/nodekit

go 1.26.0
