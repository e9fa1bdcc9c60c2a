// Command gpu-device-plugin advertises a node's GPUs to its kubelet through the kubelet's
// device-plugin API, as NVIDIA's device plugin does on a GPU node, for a node without GPUs:
// the devices are names only, so scheduling, quotas and Kueue see GPUs while the trainer runs on
// CPU. An allocation hands the container NVIDIA_VISIBLE_DEVICES, as NVIDIA's plugin does.
//
// It registers through the kubelet's plugin watcher (a socket in <root-dir>/plugins_registry),
// not the older kubelet.sock, whose path the kubelet fixes at /var/lib/kubelet/device-plugins
// whatever its root dir: several nodes on one machine would share it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	registration.UnimplementedRegistrationServer
	resource string
	socket   string
	devices  []*pluginapi.Device
}

// GetInfo answers the kubelet's plugin watcher: a device plugin for the resource, served on
// this same socket.
func (p *plugin) GetInfo(context.Context, *registration.InfoRequest) (*registration.PluginInfo, error) {
	return &registration.PluginInfo{
		Type:              registration.DevicePlugin,
		Name:              p.resource,
		Endpoint:          p.socket,
		SupportedVersions: []string{pluginapi.Version},
	}, nil
}

func (p *plugin) NotifyRegistrationStatus(_ context.Context, status *registration.RegistrationStatus) (*registration.RegistrationStatusResponse, error) {
	if status.PluginRegistered {
		log.Printf("registered %d %s with the kubelet", len(p.devices), p.resource)
	} else {
		log.Printf("the kubelet refused the plugin: %s", status.Error)
	}
	return &registration.RegistrationStatusResponse{}, nil
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once and keeps the stream open: they never change.
func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream pluginapi.DevicePlugin_ListAndWatchServer) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

func (p *plugin) Allocate(_ context.Context, request *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	response := &pluginapi.AllocateResponse{}
	for _, container := range request.ContainerRequests {
		log.Printf("allocating %s", strings.Join(container.DevicesIds, ","))
		response.ContainerResponses = append(response.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(container.DevicesIds, ",")},
		})
	}
	return response, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

func main() {
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource the devices are")
	count := flag.Int("count", 1, "how many devices to advertise")
	registry := flag.String("registry-dir", "/var/lib/kubelet/plugins_registry", "the kubelet's plugin watcher folder")
	flag.Parse()

	devices := make([]*pluginapi.Device, *count)
	for i := range devices {
		devices[i] = &pluginapi.Device{ID: fmt.Sprintf("gpu-%d", i), Health: pluginapi.Healthy}
	}
	if err := os.MkdirAll(*registry, 0o750); err != nil {
		log.Fatalf("making %s: %v", *registry, err)
	}
	socket := filepath.Join(*registry, "fluxlora-gpus.sock")
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatalf("listening on %s: %v", socket, err)
	}
	server := grpc.NewServer()
	served := &plugin{resource: *resource, socket: socket, devices: devices}
	pluginapi.RegisterDevicePluginServer(server, served)
	registration.RegisterRegistrationServer(server, served)
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
		<-signals
		server.Stop()
	}()
	log.Printf("serving %d %s on %s", *count, *resource, socket)
	if err := server.Serve(listener); err != nil {
		log.Fatalf("serving: %v", err)
	}
	_ = os.Remove(socket)
}
