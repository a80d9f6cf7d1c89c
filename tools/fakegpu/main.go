// Command fakegpu-device-plugin is a device plugin (k8s.io/kubelet deviceplugin v1beta1)
// that advertises N fake devices of a resource (default nvidia.com/gpu) to the kubelet.
//
// It serves ListAndWatch and Allocate the way NVIDIA's plugin does with its default
// "envvar" strategy: Allocate answers NVIDIA_VISIBLE_DEVICES=<ids> for the container, so a
// workload can print what it was given. When the kubelet restarts (it removes every plugin
// socket and re-creates kubelet.sock) the plugin serves and registers again. Its log lines
// follow klog's format and the real plugin's wording, so log checks written for the real
// plugin hold.
//
// Settings: flags, each with an environment variable of the same meaning:
//
//	-devices N          FAKE_GPU_COUNT       number of devices (default 1)
//	-id-prefix P        FAKE_GPU_ID_PREFIX   device IDs are P0..P(N-1) (default "fake-gpu-")
//	-device-name NAME   FAKE_GPU_NAME        reported in FAKE_GPU_NAME to containers
//	-resource-name R    FAKE_GPU_RESOURCE    default nvidia.com/gpu
//	-plugin-dir D       FAKE_GPU_PLUGIN_DIR  default /var/lib/kubelet/device-plugins
package main

import (
	"context"

	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// logf writes one klog-format line: "I1128 21:30:00.000000   12345 main.go:42] message".
func logf(severity byte, format string, args ...any) {
	now := time.Now()
	_, file, line, ok := runtime.Caller(1)
	if !ok {
		file, line = "???", 0
	}
	fmt.Fprintf(os.Stderr, "%c%02d%02d %02d:%02d:%02d.%06d %7d %s:%d] %s\n", severity,
		int(now.Month()), now.Day(), now.Hour(), now.Minute(), now.Second(), now.Nanosecond()/1000,
		os.Getpid(), filepath.Base(file), line, fmt.Sprintf(format, args...))
}

type settings struct {
	count        int
	idPrefix     string
	deviceName   string
	resourceName string
	pluginDir    string
}

func envOr(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && value != "" {
		return value
	}
	return fallback
}

func parseSettings() (settings, error) {
	var s settings
	count, err := strconv.Atoi(envOr("FAKE_GPU_COUNT", "1"))
	if err != nil {
		return s, fmt.Errorf("FAKE_GPU_COUNT: %w", err)
	}
	flag.IntVar(&s.count, "devices", count, "number of fake devices (FAKE_GPU_COUNT)")
	flag.StringVar(&s.idPrefix, "id-prefix", envOr("FAKE_GPU_ID_PREFIX", "fake-gpu-"),
		"device ID prefix (FAKE_GPU_ID_PREFIX)")
	flag.StringVar(&s.deviceName, "device-name", envOr("FAKE_GPU_NAME", "Fake GPU"),
		"device model name given to containers in FAKE_GPU_NAME")
	flag.StringVar(&s.resourceName, "resource-name", envOr("FAKE_GPU_RESOURCE", "nvidia.com/gpu"),
		"extended resource name (FAKE_GPU_RESOURCE)")
	flag.StringVar(&s.pluginDir, "plugin-dir", envOr("FAKE_GPU_PLUGIN_DIR", pluginapi.DevicePluginPath),
		"the kubelet's device-plugin directory (FAKE_GPU_PLUGIN_DIR)")
	flag.Parse()
	if s.count < 0 || s.count > 1024 {
		return s, fmt.Errorf("device count must be between 0 and 1024, got %d", s.count)
	}
	if !strings.Contains(s.resourceName, "/") {
		return s, fmt.Errorf("resource name %q has no domain (like nvidia.com/gpu)", s.resourceName)
	}
	return s, nil
}

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	s       settings
	devices []*pluginapi.Device
	ids     map[string]bool
	socket  string
	server  *grpc.Server
	stop    chan struct{}
}

func newPlugin(s settings) *plugin {
	p := &plugin{s: s, ids: map[string]bool{}}
	for i := 0; i < s.count; i++ {
		id := fmt.Sprintf("%s%d", s.idPrefix, i)
		p.devices = append(p.devices, &pluginapi.Device{ID: id, Health: pluginapi.Healthy})
		p.ids[id] = true
	}
	_, name, _ := strings.Cut(s.resourceName, "/")
	p.socket = filepath.Join(s.pluginDir, "fake-"+name+".sock")
	return p
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	logf('I', "Sent %d device(s) of '%s' to the kubelet: %s", len(p.devices), p.s.resourceName, p.idList())
	select {
	case <-p.stop:
	case <-stream.Context().Done():
	}
	return nil
}

func (p *plugin) idList() string {
	ids := make([]string, 0, len(p.devices))
	for _, d := range p.devices {
		ids = append(ids, d.ID)
	}
	return strings.Join(ids, ",")
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, creq := range req.ContainerRequests {
		for _, id := range creq.DevicesIds {
			if !p.ids[id] {
				return nil, fmt.Errorf("invalid allocation request for '%s': unknown device: %s", p.s.resourceName, id)
			}
		}
		visible := strings.Join(creq.DevicesIds, ",")
		logf('I', "Allocate for '%s': %s", p.s.resourceName, visible)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{
				"NVIDIA_VISIBLE_DEVICES": visible,
				"FAKE_GPU_NAME":          p.s.deviceName,
			},
		})
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func dial(ctx context.Context, socket string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	conn.Connect()
	for {
		state := conn.GetState()
		if state.String() == "READY" {
			return conn, nil
		}
		if !conn.WaitForStateChange(ctx, state) {
			conn.Close()
			return nil, fmt.Errorf("connecting to %s: %w", socket, ctx.Err())
		}
	}
}

// start serves on the plugin socket and registers with the kubelet.
func (p *plugin) start() error {
	_ = os.Remove(p.socket)
	listener, err := net.Listen("unix", p.socket)
	if err != nil {
		return err
	}
	p.stop = make(chan struct{})
	p.server = grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(p.server, p)
	logf('I', "Starting GRPC server for '%s'", p.s.resourceName)
	go func() {
		if err := p.server.Serve(listener); err != nil {
			logf('I', "GRPC server for '%s' crashed with error: %v", p.s.resourceName, err)
		}
	}()
	logf('I', "Starting to serve '%s' on %s", p.s.resourceName, p.socket)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dial(ctx, filepath.Join(p.s.pluginDir, "kubelet.sock"))
	if err != nil {
		return fmt.Errorf("could not register device plugin: %w", err)
	}
	defer conn.Close()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     filepath.Base(p.socket),
		ResourceName: p.s.resourceName,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	if err != nil {
		return fmt.Errorf("could not register device plugin: %w", err)
	}
	logf('I', "Registered device plugin for '%s' with Kubelet", p.s.resourceName)
	return nil
}

func (p *plugin) shutdown() {
	if p.server == nil {
		return
	}
	logf('I', "Stopping to serve '%s' on %s", p.s.resourceName, p.socket)
	close(p.stop)
	p.server.Stop()
	p.server = nil
	_ = os.Remove(p.socket)
}

// identity of a file: a re-created kubelet.sock has a new inode.
func identity(path string) (uint64, bool) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, true
	}
	return st.Ino, true
}

func main() {
	s, err := parseSettings()
	if err != nil {
		logf('E', "%v", err)
		os.Exit(2)
	}
	logf('I', "Starting fakegpu-device-plugin: %d fake device(s) of '%s' named %q, IDs %s0..",
		s.count, s.resourceName, s.deviceName, s.idPrefix)
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	kubeletSocket := filepath.Join(s.pluginDir, "kubelet.sock")
	p := newPlugin(s)
	var kubeletIno uint64
	started := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ino, kubeletUp := identity(kubeletSocket)
		_, mine := identity(p.socket)
		switch {
		case started && kubeletUp && ino != kubeletIno:
			logf('I', "inotify: %s created, restarting.", kubeletSocket)
			p.shutdown()
			started = false
		case started && !mine:
			logf('I', "%s was removed (kubelet restart), restarting.", p.socket)
			p.shutdown()
			started = false
		}
		if !started && kubeletUp {
			if err := p.start(); err != nil {
				logf('E', "%v", err)
				p.shutdown()
			} else {
				started, kubeletIno = true, ino
			}
		}
		select {
		case sig := <-signals:
			logf('I', "Received signal \"%v\", shutting down.", sig)
			p.shutdown()
			return
		case <-tick.C:
		}
	}
}
