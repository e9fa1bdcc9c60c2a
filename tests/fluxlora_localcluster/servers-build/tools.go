//go:build tools

// Package tools pins every server the tests and the demo build from this one module graph, so
// that what they share (client-go, apimachinery, grpc, protobuf, ...) is compiled once: the
// Kubernetes control plane, kubectl and a node's kubelet and kube-proxy at the version of the
// k8s.io/kubernetes line in go.mod (its staging modules are replaced to the matching v0.x), etcd,
// containerd with its runc shim and client, helm, MinIO, and our three small commands (dns,
// registry, gpu) made from CoreDNS, distribution and the kubelet's device-plugin API.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "github.com/minio/minio"
	_ "go.etcd.io/etcd/server/v3"
	_ "helm.sh/helm/v4/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
