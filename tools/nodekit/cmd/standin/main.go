// Command standin stands in for a GPU workload's image on a node with fake GPUs.
//
// It is installed as the image's entrypoint and as every program the workload profiles
// name in their command (/bin/sh, python, ...), so whatever command a Job gives, it ignores
// its arguments, says which devices the device plugin's Allocate gave the container, prints
// the reference log baked into the image and exits 0. Profiles that share an image (nvidia-smi
// and gpu-health; torch, bandwidth and nccl-allreduce) each have their own log in the image,
// under /gpu-conformance/reference/<profile>.log: the one the pod is named after (its hostname
// holds "-<profile>-" as whole dash-separated words, as in "gpu-<profile>-<node>-<id>"; the
// longest such profile) is printed; /gpu-conformance/reference.log otherwise. Without an allocated device it fails
// the way a CUDA program does, so a pod that got no GPU is never mistaken for one that did.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const (
	logPath     = "/gpu-conformance/reference.log"
	profileDir  = "/gpu-conformance/reference"
	devicesEnv  = "NVIDIA_VISIBLE_DEVICES"
	noDeviceMsg = "no CUDA-capable device is detected"
)

func main() {
	devices := strings.TrimSpace(os.Getenv(devicesEnv))
	if devices == "" || devices == "void" || devices == "none" {
		fmt.Fprintf(os.Stderr, "gpu-conformance stand-in: %s is %q: no GPU was allocated to this container\n",
			devicesEnv, devices)
		fmt.Fprintf(os.Stderr, "CUDA error: %s\n", noDeviceMsg)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gpu-conformance stand-in (no GPU program runs here): allocated %s=%s\n",
		devicesEnv, devices)
	// what a CDI spec injected (the fake spec of gpu_conformance.realnode.cdi): env and files
	var injected []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "FAKE_CDI_DEVICE_") {
			injected = append(injected, kv[strings.Index(kv, "=")+1:])
		}
	}
	if entries, err := os.ReadDir("/run/fake-gpus"); err == nil {
		files := make([]string, 0, len(entries))
		for _, e := range entries {
			files = append(files, e.Name())
		}
		fmt.Fprintf(os.Stderr, "gpu-conformance stand-in: CDI injected devices %s, device files %s\n",
			strings.Join(injected, ","), strings.Join(files, ","))
	}
	path := referenceFor(os.Getenv("HOSTNAME"))
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gpu-conformance stand-in: cannot read %s: %v\n", path, err)
		os.Exit(3)
	}
	if _, err := os.Stdout.Write(data); err != nil {
		os.Exit(4)
	}
}

// referenceFor picks the log of the profile the pod is named after (hostname words
// "...-<profile>-..."), preferring the longest profile name; the image's default log otherwise.
func referenceFor(hostname string) string {
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	best := ""
	entries, _ := os.ReadDir(profileDir)
	for _, e := range entries {
		profile := strings.TrimSuffix(e.Name(), ".log")
		if strings.Contains("-"+hostname+"-", "-"+profile+"-") && len(profile) > len(best) {
			best = profile
		}
	}
	if best == "" {
		return logPath
	}
	return filepath.Join(profileDir, best+".log")
}
