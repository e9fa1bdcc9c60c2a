// Command gpu-device-plugin advertises a node's GPUs to its kubelet through the kubelet's
// device-plugin API, as NVIDIA's device plugin does on a GPU node, for a node without GPUs:
// the devices are names only, so scheduling, quotas and Kueue see GPUs while the trainer runs on
// CPU. An allocation hands the container NVIDIA_VISIBLE_DEVICES, as NVIDIA's plugin does.
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
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
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

// register tells the kubelet where the plugin listens; the kubelet then calls ListAndWatch.
func register(kubeletSocket, endpoint, resource string) error {
	connection, err := grpc.NewClient("unix://"+kubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer connection.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(connection).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     endpoint,
		ResourceName: resource,
		Options:      &pluginapi.DevicePluginOptions{},
	})
	return err
}

func main() {
	resource := flag.String("resource", "nvidia.com/gpu", "the extended resource the devices are")
	count := flag.Int("count", 1, "how many devices to advertise")
	directory := flag.String("plugin-dir", pluginapi.DevicePluginPath, "the kubelet's device-plugins folder")
	flag.Parse()

	devices := make([]*pluginapi.Device, *count)
	for i := range devices {
		devices[i] = &pluginapi.Device{ID: fmt.Sprintf("gpu-%d", i), Health: pluginapi.Healthy}
	}
	endpoint := fmt.Sprintf("fluxlora-%s.sock", strings.NewReplacer("/", "-", ".", "-").Replace(*resource))
	socket := filepath.Join(*directory, endpoint)
	_ = os.Remove(socket)
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatalf("listening on %s: %v", socket, err)
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, &plugin{devices: devices})
	go func() {
		if err := server.Serve(listener); err != nil {
			log.Fatalf("serving: %v", err)
		}
	}()

	// The kubelet may still be starting: its socket appears when it is ready for plugins.
	kubeletSocket := filepath.Join(*directory, filepath.Base(pluginapi.KubeletSocket))
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = register(kubeletSocket, endpoint, *resource)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("registering with the kubelet at %s: %v", kubeletSocket, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.Printf("registered %d %s with the kubelet", *count, *resource)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
	server.Stop()
	_ = os.Remove(socket)
}
