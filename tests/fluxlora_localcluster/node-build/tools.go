//go:build tools

// Package tools pins the container runtime of the tests' real node: containerd, its runc shim
// and its client, at the version of the containerd line in go.mod.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
